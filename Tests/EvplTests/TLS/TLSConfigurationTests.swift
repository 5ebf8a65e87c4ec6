import Evpl
import EvplTLS
import Testing
#if canImport(Glibc)
import Glibc
#endif

@Suite("TLS configuration errors")
struct TLSConfigurationTests {
    /// Expects `make` to throw an ``EvplError`` with `code` whose text contains `words`.
    private func expectRefusal(_ code: EvplError.Code, mentioning words: String, sourceLocation: SourceLocation = #_sourceLocation,
                               _ make: () throws -> Void) {
        do {
            try make()
            Issue.record("accepted; expected \(code) mentioning \(words)", sourceLocation: sourceLocation)
        } catch let error as EvplError {
            #expect(error.code == code, "\(error)", sourceLocation: sourceLocation)
            #expect(error.description.contains(words), "\(error)", sourceLocation: sourceLocation)
        } catch {
            Issue.record("not an EvplError: \(error)", sourceLocation: sourceLocation)
        }
    }

    @Test("a context refuses what OpenSSL cannot use, naming it: missing or unreadable certificates and keys, a key for another certificate, bad ALPN names and versions")
    func contextRefusals() throws {
        let fixtures = try TLSFixtures.get()
        let missing = fixtures.directory + "/missing.pem"
        let chain = TLSConfiguration.PEM.file(fixtures.serverCertificate)
        let key = TLSConfiguration.PEM.file(fixtures.serverKey)
        expectRefusal(.invalidArgument, mentioning: "needs a certificate chain") {
            _ = try TLSContext(.client(serverName: "localhost"), role: .server)
        }
        expectRefusal(.invalidArgument, mentioning: "without its private key") {
            var configuration = TLSConfiguration.client(serverName: "localhost")
            configuration.certificateChain = chain
            _ = try TLSContext(configuration, role: .client)
        }
        expectRefusal(.invalidArgument, mentioning: missing) {
            _ = try TLSContext(.server(certificateChain: .file(missing), privateKey: key), role: .server)
        }
        expectRefusal(.invalidArgument, mentioning: "no certificate in the PEM data") {
            _ = try TLSContext(.server(certificateChain: .bytes(Array("not a certificate".utf8)), privateKey: key), role: .server)
        }
        expectRefusal(.invalidArgument, mentioning: missing) {
            _ = try TLSContext(.server(certificateChain: chain, privateKey: .file(missing)), role: .server)
        }
        expectRefusal(.invalidArgument, mentioning: "PEM data") {
            _ = try TLSContext(.server(certificateChain: chain, privateKey: .bytes(Array("no key here".utf8))), role: .server)
        }
        expectRefusal(.invalidArgument, mentioning: "key values mismatch") {
            _ = try TLSContext(.server(certificateChain: chain, privateKey: .file(fixtures.clientKey)), role: .server)
        }
        expectRefusal(.invalidArgument, mentioning: missing) {
            _ = try TLSContext(.client(serverName: "localhost", trustRoots: .certificates(.file(missing))), role: .client)
        }
        expectRefusal(.invalidArgument, mentioning: "no certificate in the PEM data") {
            _ = try TLSContext(.client(serverName: "localhost", trustRoots: .certificates(.bytes([]))), role: .client)
        }
        for name in ["", String(repeating: "x", count: 256)] {
            expectRefusal(.invalidArgument, mentioning: "1 to 255 bytes") {
                var configuration = TLSConfiguration.client(serverName: "localhost")
                configuration.applicationProtocols = ["h2", name]
                _ = try TLSContext(configuration, role: .client)
            }
        }
        expectRefusal(.invalidArgument, mentioning: "versions") {
            var configuration = TLSConfiguration.client(serverName: "localhost")
            configuration.minimumVersion = .tls13
            configuration.maximumVersion = .tls12
            _ = try TLSContext(configuration, role: .client)
        }
        expectRefusal(.invalidArgument, mentioning: "-1 tickets per handshake") {
            _ = try fixtures.serverContext(ticketsPerHandshake: -1)
        }
        // PEM bytes in memory work as files do: the chain, the key and the trust roots.
        let pem = fileContents
        _ = try TLSContext(.server(certificateChain: .bytes(try pem(fixtures.serverCertificate) + pem(fixtures.caCertificate)),
                                   privateKey: .bytes(try pem(fixtures.serverKey))), role: .server)
        _ = try TLSContext(.client(serverName: "localhost", trustRoots: .certificates(.bytes(try pem(fixtures.caCertificate)))), role: .client)
    }

    @Test("TLS is refused on datagrams and in the wrong role, and a self-signed identity needs a usable name")
    func protocolRefusals() throws {
        let fixtures = try TLSFixtures.get()
        let loop = try makeLoop()
        let client = try fixtures.clientContext()
        let server = try fixtures.serverContext()
        let loopback = try SocketAddress(host: "127.0.0.1", port: 0)
        expectRefusal(.unavailable, mentioning: "DTLS") {
            _ = try loop.bindDatagram(loopback, protocol: EvplProtocol(.udp, tls: client)) { _, _, _ in }
        }
        expectRefusal(.invalidArgument, mentioning: "a listener needs a server TLS context") {
            _ = try Listener(address: loopback, protocol: EvplProtocol(.tcp, tls: client))
        }
        expectRefusal(.invalidArgument, mentioning: "a connect needs a client TLS context") {
            _ = try loop.connect(to: loopback, protocol: EvplProtocol(.tcp, tls: server)) { _, _ in }
        }
        expectRefusal(.invalidArgument, mentioning: "no name") {
            _ = try TLSConfiguration.selfSignedIdentity(for: [])
        }
        expectRefusal(.invalidArgument, mentioning: "self-signed certificate") {
            _ = try TLSConfiguration.selfSignedIdentity(for: ["", "\u{1}"])
        }
        expectNoLeaks(loop)
    }

    @Test("a public key pin is the SHA-256 of the SubjectPublicKeyInfo, the same as the openssl tool's, from a file or from memory; no certificate, no pin")
    func publicKeyPins() throws {
        let fixtures = try TLSFixtures.get()
        let command = "openssl x509 -in \(fixtures.serverCertificate) -pubkey -noout | openssl pkey -pubin -outform der | openssl dgst -sha256 -hex"
        let result = try runShell(command)
        #expect(result.status == 0, "\(result.output)")
        let hex = try #require(result.output.split(separator: " ").last).prefix(64)
        let pin = try TLSConfiguration.publicKeyPin(of: .file(fixtures.serverCertificate))
        #expect(pin.map { ($0 < 16 ? "0" : "") + String($0, radix: 16) }.joined() == hex)
        #expect(try TLSConfiguration.publicKeyPin(of: .bytes(fileContents(fixtures.serverCertificate))) == pin)
        expectRefusal(.invalidArgument, mentioning: "missing.pem") {
            _ = try TLSConfiguration.publicKeyPin(of: .file(fixtures.directory + "/missing.pem"))
        }
        expectRefusal(.invalidArgument, mentioning: "no certificate") {
            _ = try TLSConfiguration.publicKeyPin(of: .bytes(Array("not a certificate".utf8)))
        }
    }
}
