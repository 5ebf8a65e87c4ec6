import ArgumentParser
import Evpl
import EvplTLS

/// `--tls` and its certificates, for every stream command.
struct TLSOptions: ParsableArguments {
    @Flag(help: "Run TLS over the stream (tcp or unix).")
    var tls = false

    @Option(name: .customLong("tls-cert"), help: "PEM certificate chain: the server's (required with --tls), or a client's for mutual TLS.")
    var certificate: String?

    @Option(name: .customLong("tls-key"), help: "PEM private key of --tls-cert.")
    var key: String?

    @Option(name: .customLong("tls-ca"), help: "PEM CA certificates. A client trusts them (the system's when absent); a server given them requires client certificates they signed.")
    var certificateAuthorities: String?

    @Option(name: .customLong("tls-verify-host"), help: "Client: the name the server's certificate must carry, also sent as SNI (default: --host).")
    var verifyHost: String?

    @Flag(name: .customLong("tls-resume"), help: "Client: resume sessions with the tickets the server sends (abbreviated handshakes). Off by default, so that each connection of perf --mode handshake runs a full handshake.")
    var resume = false

    @Option(name: .customLong("tls-profile"), help: "intermediate (TLS 1.2 with ECDHE and AEAD ciphers, and TLS 1.3; the default) or modern (TLS 1.3 only), after Mozilla's recommendations.")
    var profile: TLSConfiguration.Profile?

    @Option(name: .customLong("tls-tickets"), help: "Server: TLS 1.3 session tickets sent after each full handshake (0: none, and no TLS 1.2 resumption either, so clients cannot resume).")
    var tickets = 2

    func validate() throws {
        guard tls || (certificate == nil && key == nil && certificateAuthorities == nil && verifyHost == nil && !resume && profile == nil) else {
            throw ValidationError("--tls-cert, --tls-key, --tls-ca, --tls-verify-host, --tls-resume and --tls-profile need --tls")
        }
        guard (certificate == nil) == (key == nil) else { throw ValidationError("--tls-cert and --tls-key go together") }
    }

    /// The TLS context the options describe for `role`, or `nil` without `--tls`.
    func context(role: TLSContext.Role, host: String, applicationProtocols: [String] = []) throws -> TLSContext? {
        guard tls else { return nil }
        var configuration: TLSConfiguration
        switch role {
        case .server:
            guard let certificate, let key else { throw ValidationError("a TLS server needs --tls-cert and --tls-key") }
            configuration = .server(certificateChain: .file(certificate), privateKey: .file(key))
            configuration.ticketsPerHandshake = tickets
            if let certificateAuthorities {
                configuration.verifiesPeer = true
                configuration.trustRoots = .certificates(.file(certificateAuthorities))
            }
        case .client:
            configuration = .client(serverName: verifyHost ?? host, trustRoots: certificateAuthorities.map { .certificates(.file($0)) } ?? .system)
            configuration.certificateChain = certificate.map { .file($0) }
            configuration.privateKey = key.map { .file($0) }
            configuration.resumesSessions = resume
        }
        configuration.profile = profile ?? .intermediate
        configuration.applicationProtocols = applicationProtocols
        let ready = configuration
        return try failing { try TLSContext(ready, role: role) }
    }
}

extension TLSConfiguration.Profile: ExpressibleByArgument {}
