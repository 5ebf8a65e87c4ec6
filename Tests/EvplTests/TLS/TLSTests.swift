import Evpl
import EvplTLS
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// What one end of a TLS test connection saw.
final class TLSEndpointLog {
    var connected = false
    var received: [UInt8] = []
    var ended: EvplError??
    var applicationProtocol: String?
    var version: String?
    var resumed = false

    /// Records `event`; the server side echoes what it receives.
    func record(_ connection: Connection, _ event: ConnectionEvent, echo: Bool) {
        switch event {
        case .connected:
            connected = true
            applicationProtocol = connection.tlsApplicationProtocol
            version = connection.tlsVersion
            resumed = connection.tlsResumed
        case .received(let bytes):
            received += bytes.array
            if echo { try? bytes.withContiguousBytes { try connection.send(copying: $0) } }
        case .disconnected(let error):
            ended = .some(error)
        default:
            break
        }
    }
}

/// A TLS echo listener on 127.0.0.1 attached to `loop`. Its connections
/// are logged in `log`, or each in a log of its own when none is given.
func tlsEchoListener(on loop: EventLoop, _ context: TLSContext, backend: EvplProtocol.Backend = .socket, log: TLSEndpointLog? = nil) throws -> Listener {
    let listener = try Listener(address: SocketAddress(host: "127.0.0.1", port: 0), protocol: EvplProtocol(.tcp, backend: backend, tls: context))
    loop.attach(to: listener) { connection in
        let connectionLog = log ?? TLSEndpointLog()
        connection.handler = { connection, event in connectionLog.record(connection, event, echo: true) }
    }
    try spin(loop, "the listener to attach") { listener.attachedLoopCount == 1 }
    return listener
}

@Suite("TLS")
struct TLSTests {
    @Test("an evpl client and server echo 1 MiB sent in random chunks (the first before the handshake ends) over TLS 1.3 with ALPN, and end cleanly with close_notify",
          arguments: StreamCase.backends)
    func echo(backend: EvplProtocol.Backend) throws {
        let fixtures = try TLSFixtures.get()
        let loop = try makeLoop()
        let server = TLSEndpointLog()
        let listener = try tlsEchoListener(on: loop, fixtures.serverContext(alpn: ["evpl/1", "h2"]), backend: backend, log: server)
        defer { listener.close() }
        var generator = SystemRandomNumberGenerator()
        let payload = (0..<(1 << 20)).map { _ in UInt8.random(in: 0...255, using: &generator) }
        let client = TLSEndpointLog()
        let clientProtocol = EvplProtocol(.tcp, backend: backend, tls: try fixtures.clientContext(alpn: ["h2", "http/1.1"]))
        let connection = try loop.connect(to: listener.address, protocol: clientProtocol) { connection, event in
            client.record(connection, event, echo: false)
        }
        var sent = 0
        while sent < payload.count {
            let chunk = min(Int.random(in: 1...40_000, using: &generator), payload.count - sent)
            try payload[sent..<(sent + chunk)].withUnsafeBytes { try connection.send(copying: $0) }
            sent += chunk
            if sent < payload.count { try spin(loop, "the echo to keep up") { client.connected && client.received.count + 200_000 > sent } }
        }
        try spin(loop, "the echo") { client.received.count == payload.count || client.ended != nil }
        #expect(client.received == payload)
        connection.finish()
        try spin(loop, "both ends to close") { client.ended != nil && server.ended != nil }
        #expect(client.ended == .some(nil), "the client ends cleanly: \(String(describing: client.ended))")
        #expect(server.ended == .some(nil), "the server ends cleanly: \(String(describing: server.ended))")
        #expect(client.version == "TLSv1.3" && server.version == "TLSv1.3")
        #expect(client.applicationProtocol == "h2" && server.applicationProtocol == "h2")
        expectNoLeaks(loop)
    }

    @Test("a certificate from an unknown issuer, or for another name, is refused with .tlsCertificate naming why",
          arguments: StreamCase.backends)
    func refusedCertificates(backend: EvplProtocol.Backend) throws {
        let fixtures = try TLSFixtures.get()
        let loop = try makeLoop()
        let server = TLSEndpointLog()
        let listener = try tlsEchoListener(on: loop, fixtures.serverContext(), backend: backend, log: server)
        defer { listener.close() }
        let trustingAStranger = try TLSContext(.client(serverName: "localhost", trustRoots: .certificates(.file(fixtures.strangerCertificate))), role: .client)
        let cases: [(TLSContext, String)] = [
            (trustingAStranger, "unable to get local issuer certificate"),
            (try fixtures.clientContext(serverName: "elsewhere.example"), "hostname mismatch"),
        ]
        for (context, reason) in cases {
            let client = TLSEndpointLog()
            _ = try loop.connect(to: listener.address, protocol: EvplProtocol(.tcp, backend: backend, tls: context)) { connection, event in
                client.record(connection, event, echo: false)
            }
            try spin(loop, "the refusal") { client.ended != nil }
            let error = try #require(client.ended ?? nil, "the handshake must fail")
            #expect(error.code == .tlsCertificate)
            #expect(error.context.contains(reason), "\(error)")
            #expect(!client.connected, "no connected event before a refused handshake")
        }
        try spin(loop, "the server side to end") { server.ended != nil }
        #expect(!server.connected)
        expectNoLeaks(loop)
    }

    @Test("a throwaway self-signed identity serves a client that trusts exactly that certificate, over a Unix socket too")
    func selfSignedIdentity() throws {
        let identity = try TLSConfiguration.selfSignedIdentity(for: ["localhost", "127.0.0.1"])
        let serverContext = try TLSContext(.server(certificateChain: identity.certificateChain, privateKey: identity.privateKey), role: .server)
        let clientContext = try TLSContext(.client(serverName: "127.0.0.1", trustRoots: .certificates(identity.certificateChain)), role: .client)
        let loop = try makeLoop()
        for address in [try SocketAddress(host: "127.0.0.1", port: 0), try SocketAddress(parsing: "@evpl-tls-\(getpid())-\(UniqueName.next())")] {
            let transport: EvplProtocol.Transport = address.isUnix ? .unix : .tcp
            let server = TLSEndpointLog()
            let listener = try Listener(address: address, protocol: EvplProtocol(transport, backend: .socket, tls: serverContext))
            defer { listener.close() }
            loop.attach(to: listener) { connection in
                connection.handler = { connection, event in server.record(connection, event, echo: true) }
            }
            try spin(loop, "the listener to attach") { listener.attachedLoopCount == 1 }
            let client = TLSEndpointLog()
            let connection = try loop.connect(to: listener.address, protocol: EvplProtocol(transport, backend: .socket, tls: clientContext)) { connection, event in
                client.record(connection, event, echo: false)
            }
            try connection.send(Array("self-signed".utf8))
            try spin(loop, "the echo") { client.received.count == 11 || client.ended != nil }
            #expect(String(decoding: client.received, as: UTF8.self) == "self-signed", "\(transport)")
            connection.finish()
            try spin(loop, "both ends to close") { client.ended != nil && server.ended != nil }
            #expect(client.ended == .some(nil) && server.ended == .some(nil), "\(transport)")
        }
        expectNoLeaks(loop)
    }

    @Test("the async layer over TLS: a served connection echoes 200 framed messages to an async client, which ends with close_notify; the server's inbound ends cleanly",
          arguments: StreamCase.backends)
    func asyncEcho(backend: EvplProtocol.Backend) throws {
        let fixtures = try TLSFixtures.get()
        let loop = try makeLoop()
        let listener = try Listener(address: SocketAddress(host: "127.0.0.1", port: 0),
                                    protocol: EvplProtocol(.tcp, backend: backend, tls: fixtures.serverContext()))
        defer { listener.close() }
        let clientProtocol = EvplProtocol(.tcp, backend: backend, tls: try fixtures.clientContext())
        try runTasks(on: loop, "the async TLS ends", [
            {
                let connection = try await acceptOne(from: listener, segmenter: Segmenters.lengthPrefixed32())
                try await connection.executeThenClose { connection in
                    // Written before the handshake has ended: held, then encrypted.
                    try await connection.write([0, 0, 0, 5] + Array("hello".utf8))
                    var echoed = 0
                    for try await message in connection.inbound {
                        try await connection.write(message)
                        echoed += 1
                    }
                    #expect(echoed == 200)
                }
            },
            {
                let loop = try currentLoop()
                let connection = try await loop.connect(to: listener.address, protocol: clientProtocol, segmenter: Segmenters.lengthPrefixed32())
                try await connection.executeThenClose { connection in
                    #expect(try await connection.receive()?.array == [0, 0, 0, 5] + Array("hello".utf8))
                    for round in 0..<200 {
                        let payload = patternBytes(from: round * 7919, count: 1 + round * 97 % 20_000)
                        let length = UInt32(payload.count)
                        let message = [UInt8(length >> 24), UInt8((length >> 16) & 0xFF), UInt8((length >> 8) & 0xFF), UInt8(length & 0xFF)] + payload
                        try await connection.write(message)
                        #expect(try await connection.receive()?.array == message, "round \(round)")
                    }
                    connection.finish()
                    #expect(try await connection.receive() == nil, "the server's close_notify ends the stream")
                }
            },
        ])
        expectNoLeaks(loop)
    }

    @Test("under TLS, a send whose records the pool cannot hold is refused with .resourceExhausted before anything is encrypted, and the stream goes on",
          arguments: StreamCase.backends)
    func sendAtThePoolCeiling(backend: EvplProtocol.Backend) throws {
        let fixtures = try TLSFixtures.get()
        let serverLoop = try makeLoop()
        let server = TLSEndpointLog()
        let listener = try tlsEchoListener(on: serverLoop, fixtures.serverContext(), backend: backend, log: server)
        defer { listener.close() }
        // 16 buffers of 4 KiB: room for a few records, never for 256 KiB.
        let loop = try makeLoop(bufferSize: 4096) { $0.poolMaxBytes = 16 * 4096 }
        let client = TLSEndpointLog()
        let connection = try loop.connect(to: listener.address, protocol: EvplProtocol(.tcp, backend: backend, tls: fixtures.clientContext())) { connection, event in
            client.record(connection, event, echo: false)
        }
        try spin(loop, "the handshake") {
            serverLoop.runOnceWithoutBlocking()
            return client.connected || client.ended != nil
        }
        let big = [UInt8](repeating: 0x42, count: 256 << 10)
        do {
            try connection.send(big)
            Issue.record("256 KiB of records cannot fit a 64 KiB pool")
        } catch {
            #expect(error.code == .resourceExhausted, "\(error)")
        }
        #expect(!connection.isClosed && client.ended == nil, "a refused send leaves the stream usable")
        try connection.send(Array("still here".utf8))
        try spin(loop, "the echo") {
            serverLoop.runOnceWithoutBlocking()
            return client.received.count == 10 || client.ended != nil
        }
        #expect(String(decoding: client.received, as: UTF8.self) == "still here")
        connection.finish()
        try spin(loop, "both ends to close") {
            serverLoop.runOnceWithoutBlocking()
            return client.ended != nil && server.ended != nil
        }
        #expect(client.ended == .some(nil) && server.ended == .some(nil))
        expectNoLeaks(loop)
    }
}
