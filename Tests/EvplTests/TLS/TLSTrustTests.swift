import Evpl
import EvplTLS
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// Session resumption, public key pinning and expired certificates, evpl
/// client against evpl server.
@Suite("TLS trust and resumption")
struct TLSTrustTests {
    /// Connects with `context`, echoes one message and finishes; returns
    /// what the client saw.
    private func exchange(_ loop: EventLoop, _ listener: Listener, _ context: TLSContext, backend: EvplProtocol.Backend = .socket) throws -> TLSEndpointLog {
        let client = TLSEndpointLog()
        let connection = try loop.connect(to: listener.address, protocol: EvplProtocol(.tcp, backend: backend, tls: context)) { connection, event in
            client.record(connection, event, echo: false)
        }
        try connection.send(Array("resume?".utf8))
        try spin(loop, "the echo or the end") { client.received.count == 7 || client.ended != nil }
        if client.ended == nil {
            connection.finish()
            try spin(loop, "the close") { client.ended != nil }
        }
        return client
    }

    @Test("a client resumes with the ticket its context kept from the connection before, over TLS 1.3 (each ticket once) and 1.2 (the session again and again), and a context with resumption off runs every handshake in full",
          arguments: StreamCase.backends)
    func resumption(backend: EvplProtocol.Backend) throws {
        let fixtures = try TLSFixtures.get()
        let loop = try makeLoop()
        for version in [TLSConfiguration.Version.tls13, .tls12] {
            let listener = try tlsEchoListener(on: loop, fixtures.serverContext(maximumVersion: version), backend: backend)
            defer { listener.close() }
            let resuming = try fixtures.clientContext()
            let first = try exchange(loop, listener, resuming, backend: backend)
            #expect(first.ended == .some(nil) && !first.resumed, "\(version): the first handshake runs in full")
            for round in 1...3 {
                let next = try exchange(loop, listener, resuming, backend: backend)
                #expect(next.received == Array("resume?".utf8), "\(version) round \(round)")
                #expect(next.ended == .some(nil) && next.resumed, "\(version) round \(round): resumed with a ticket from an earlier connection")
            }
            let full = try fixtures.clientContext(resumesSessions: false)
            for round in 1...2 {
                let client = try exchange(loop, listener, full, backend: backend)
                #expect(client.ended == .some(nil) && !client.resumed, "\(version) round \(round): resumption off")
            }
        }
        expectNoLeaks(loop)
    }

    @Test("a server that sends no tickets is never resumed; one that sends one per handshake is, every time")
    func serverTickets() throws {
        let fixtures = try TLSFixtures.get()
        let loop = try makeLoop()
        for (tickets, resumes) in [(0, false), (1, true)] {
            let listener = try tlsEchoListener(on: loop, fixtures.serverContext(ticketsPerHandshake: tickets))
            defer { listener.close() }
            let client = try fixtures.clientContext()
            #expect(try !exchange(loop, listener, client).resumed)
            for round in 1...3 {
                let next = try exchange(loop, listener, client)
                #expect(next.ended == .some(nil) && next.resumed == resumes, "\(tickets) tickets, round \(round)")
            }
        }
        expectNoLeaks(loop)
    }

    @Test("tickets from one server are never offered to another address: the first handshake with each runs in full")
    func ticketsStayWithTheirServer() throws {
        let fixtures = try TLSFixtures.get()
        let loop = try makeLoop()
        let one = try tlsEchoListener(on: loop, fixtures.serverContext())
        defer { one.close() }
        let other = try tlsEchoListener(on: loop, fixtures.serverContext())
        defer { other.close() }
        let context = try fixtures.clientContext()
        #expect(try !exchange(loop, one, context).resumed)
        #expect(try exchange(loop, one, context).resumed)
        let elsewhere = try exchange(loop, other, context)
        #expect(elsewhere.ended == .some(nil) && !elsewhere.resumed, "another address gets a full handshake")
        expectNoLeaks(loop)
    }

    @Test("a pinned public key admits its server, with or without CA verification; another key is refused with .tlsCertificate before connected")
    func pinning() throws {
        let fixtures = try TLSFixtures.get()
        let loop = try makeLoop()
        let listener = try tlsEchoListener(on: loop, fixtures.serverContext())
        defer { listener.close() }
        let serverPin = try TLSConfiguration.publicKeyPin(of: .file(fixtures.serverCertificate))
        let strangerPin = try TLSConfiguration.publicKeyPin(of: .file(fixtures.strangerCertificate))
        #expect(serverPin.count == 32 && serverPin != strangerPin)

        var pinned = TLSConfiguration.client(serverName: "localhost", trustRoots: .certificates(.file(fixtures.caCertificate)))
        pinned.pinnedPublicKeys = [strangerPin, serverPin]
        let admitted = try exchange(loop, listener, TLSContext(pinned, role: .client))
        #expect(admitted.connected && admitted.ended == .some(nil) && admitted.received == Array("resume?".utf8))

        var pinOnly = TLSConfiguration.client(serverName: "localhost")
        pinOnly.verifiesPeer = false
        pinOnly.pinnedPublicKeys = [serverPin]
        let trustedByPin = try exchange(loop, listener, TLSContext(pinOnly, role: .client))
        #expect(trustedByPin.connected && trustedByPin.ended == .some(nil), "a pin alone can stand for the CA")

        for verifies in [true, false] {
            var wrong = pinned
            wrong.verifiesPeer = verifies
            wrong.pinnedPublicKeys = [strangerPin]
            wrong.resumesSessions = false
            let refused = try exchange(loop, listener, TLSContext(wrong, role: .client))
            let error = try #require(refused.ended ?? nil, "a key that is not pinned must be refused")
            #expect(error.code == .tlsCertificate && error.context.contains("not pinned"), "\(error)")
            #expect(!refused.connected && refused.received.isEmpty)
        }
        expectNoLeaks(loop)
    }

    @Test("a resumed session is still held to the pins: a ticket from a pinned server does not let another key in")
    func pinningSurvivesResumption() throws {
        let fixtures = try TLSFixtures.get()
        let loop = try makeLoop()
        let listener = try tlsEchoListener(on: loop, fixtures.serverContext())
        defer { listener.close() }
        var pinned = TLSConfiguration.client(serverName: "localhost", trustRoots: .certificates(.file(fixtures.caCertificate)))
        pinned.pinnedPublicKeys = [try TLSConfiguration.publicKeyPin(of: .file(fixtures.serverCertificate))]
        let context = try TLSContext(pinned, role: .client)
        #expect(try exchange(loop, listener, context).connected)
        let resumed = try exchange(loop, listener, context)
        #expect(resumed.resumed && resumed.connected && resumed.ended == .some(nil), "a resumed session carries the server's certificate, which passes the pin")
        expectNoLeaks(loop)
    }

    @Test("an expired server certificate is refused with .tlsCertificate saying so, on both backends",
          arguments: StreamCase.backends)
    func expiredCertificate(backend: EvplProtocol.Backend) throws {
        let fixtures = try TLSFixtures.get()
        let loop = try makeLoop()
        let expired = try TLSContext(.server(certificateChain: .file(fixtures.expiredCertificate), privateKey: .file(fixtures.expiredKey)), role: .server)
        let listener = try tlsEchoListener(on: loop, expired, backend: backend)
        defer { listener.close() }
        let client = try exchange(loop, listener, fixtures.clientContext(), backend: backend)
        let error = try #require(client.ended ?? nil, "an expired certificate must be refused")
        #expect(error.code == .tlsCertificate && error.context.contains("certificate has expired"), "\(error)")
        #expect(!client.connected && client.received.isEmpty)
        expectNoLeaks(loop)
    }
}
