import Evpl
import EvplTLS
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// Certificates for the TLS tests, made once per test run with the
/// `openssl` tool (ECDSA P-256): a CA, a server certificate it signed for
/// `localhost` and `127.0.0.1` (and one with an RSA 2048 key, for the
/// cipher suites only RSA keys use), a client certificate it signed, a server
/// certificate it signed that expired in 2020 (`openssl ca` sets the
/// dates), and a self-signed "stranger" for the same names that nobody
/// trusts.
struct TLSFixtures: Sendable {
    let directory: String

    var caCertificate: String { directory + "/ca.pem" }
    var serverCertificate: String { directory + "/server.pem" }
    var serverKey: String { directory + "/server.key" }
    var rsaServerCertificate: String { directory + "/rsa-server.pem" }
    var rsaServerKey: String { directory + "/rsa-server.key" }
    var clientCertificate: String { directory + "/client.pem" }
    var clientKey: String { directory + "/client.key" }
    var strangerCertificate: String { directory + "/stranger.pem" }
    var strangerKey: String { directory + "/stranger.key" }
    var expiredCertificate: String { directory + "/expired.pem" }
    var expiredKey: String { directory + "/expired.key" }

    private static let made: Result<TLSFixtures, TLSFixturesFailed> = {
        let directory = "/tmp/evpl-tls-\(getpid())"
        let names = "subjectAltName=DNS:localhost,IP:127.0.0.1"
        let key = "-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes"
        let script = """
            set -e
            rm -rf \(directory) && mkdir -p \(directory) && cd \(directory)
            openssl req -x509 \(key) -keyout ca.key -out ca.pem -days 2 -subj /CN=evpl-test-ca
            openssl req \(key) -keyout server.key -out server.csr -subj /CN=localhost
            printf '\(names)\\n' >server.ext
            openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out server.pem -days 2 -extfile server.ext
            openssl req -newkey rsa:2048 -nodes -keyout rsa-server.key -out rsa-server.csr -subj /CN=localhost
            openssl x509 -req -in rsa-server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out rsa-server.pem -days 2 -extfile server.ext
            openssl req \(key) -keyout client.key -out client.csr -subj /CN=evpl-test-client
            openssl x509 -req -in client.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out client.pem -days 2
            openssl req -x509 \(key) -keyout stranger.key -out stranger.pem -days 2 -subj /CN=localhost -addext \(names)
            openssl req \(key) -keyout expired.key -out expired.csr -subj /CN=localhost -addext \(names)
            printf '[ca]\\ndefault_ca=test\\n[test]\\ndatabase=index.txt\\nnew_certs_dir=.\\nserial=serial\\ndefault_md=sha256\\npolicy=any\\ncopy_extensions=copy\\n[any]\\ncommonName=supplied\\n' >ca.cnf
            touch index.txt && echo 01 >serial
            openssl ca -batch -notext -config ca.cnf -cert ca.pem -keyfile ca.key -in expired.csr -out expired.pem \\
                -startdate 20200101000000Z -enddate 20200102000000Z
            """
        guard let result = try? runShell("(\(script)) 2>&1"), result.status == 0 else {
            return .failure(TLSFixturesFailed(output: (try? runShell("openssl version 2>&1").output) ?? "no openssl"))
        }
        return .success(TLSFixtures(directory: directory))
    }()

    /// Writes `text` to a file of the fixtures' directory; returns its path.
    /// The file appears whole or not at all (written under a unique name,
    /// then renamed): tests running at once write the same scripts, and a
    /// peer that read one while another test truncated it ran nothing.
    func write(_ text: String, to name: String) throws -> String {
        let path = directory + "/" + name
        let partial = path + ".\(UniqueName.next())"
        let file = try #require(fopen(partial, "w"), "cannot write \(partial)")
        fputs(text, file)
        try #require(fclose(file) == 0, "cannot write \(partial)")
        try #require(rename(partial, path) == 0, "cannot rename \(partial)")
        return path
    }

    /// The fixtures, made on first use.
    static func get() throws -> TLSFixtures { try made.get() }

    /// A server context presenting the CA-signed certificate (the one
    /// with an RSA key with `rsa`).
    func serverContext(alpn: [String] = [], requireClientCertificate: Bool = false,
                       maximumVersion: TLSConfiguration.Version = .tls13, ticketsPerHandshake: Int = 2,
                       profile: TLSConfiguration.Profile = .intermediate, rsa: Bool = false) throws -> TLSContext {
        var configuration = rsa ? TLSConfiguration.server(certificateChain: .file(rsaServerCertificate), privateKey: .file(rsaServerKey))
            : TLSConfiguration.server(certificateChain: .file(serverCertificate), privateKey: .file(serverKey))
        configuration.profile = profile
        configuration.applicationProtocols = alpn
        configuration.maximumVersion = maximumVersion
        configuration.ticketsPerHandshake = ticketsPerHandshake
        if requireClientCertificate {
            configuration.verifiesPeer = true
            configuration.trustRoots = .certificates(.file(caCertificate))
        }
        return try TLSContext(configuration, role: .server)
    }

    /// A client context trusting the test CA, expecting `serverName`.
    func clientContext(serverName: String = "localhost", alpn: [String] = [], presentCertificate: Bool = false,
                       resumesSessions: Bool = true) throws -> TLSContext {
        var configuration = TLSConfiguration.client(serverName: serverName, trustRoots: .certificates(.file(caCertificate)))
        configuration.applicationProtocols = alpn
        configuration.resumesSessions = resumesSessions
        if presentCertificate {
            configuration.certificateChain = .file(clientCertificate)
            configuration.privateKey = .file(clientKey)
        }
        return try TLSContext(configuration, role: .client)
    }
}

/// The `openssl` tool could not make the test certificates.
struct TLSFixturesFailed: Error, CustomStringConvertible {
    let output: String
    var description: String { "could not make the TLS test certificates (is the openssl tool installed? Scripts/bootstrap.sh installs it): \(output)" }
}
