/// What a TLS endpoint presents and accepts: its certificate and key,
/// whom it trusts, the name it expects, ALPN and versions. Turn it into a
/// ``TLSContext`` once, then name that context in the ``EvplProtocol`` of a
/// listener or a connect.
public struct TLSConfiguration: Sendable {
    /// PEM data, from a file or from memory.
    public enum PEM: Sendable {
        /// A PEM file.
        case file(String)
        /// PEM text in memory.
        case bytes([UInt8])
    }

    /// Where the certificates that vouch for a peer come from.
    public enum TrustRoots: Sendable {
        /// The system's (`/etc/ssl/certs` on Debian).
        case system
        /// The CA certificates in a PEM file or in memory.
        case certificates(PEM)
    }

    /// A TLS protocol version.
    public enum Version: Int, Sendable, Comparable {
        /// TLS 1.2.
        case tls12 = 0x0303
        /// TLS 1.3.
        case tls13 = 0x0304

        /// Orders by protocol version.
        public static func < (lhs: Version, rhs: Version) -> Bool { lhs.rawValue < rhs.rawValue }
    }

    /// The certificate chain this side presents, leaf first: required on a
    /// server, and on a client that a server asks for one.
    public var certificateChain: PEM?
    /// The private key of the chain's leaf certificate.
    public var privateKey: PEM?
    /// Whom a peer's certificate must chain up to.
    public var trustRoots: TrustRoots = .system
    /// Whether the peer must present a certificate that verifies: on for a
    /// client, off for a server unless it wants mutual TLS.
    public var verifiesPeer: Bool
    /// On a client, the name sent in SNI and checked against the server's
    /// certificate (a DNS name or an IP address).
    public var serverName: String?
    /// ALPN protocol names in order of preference (`h2`, `http/1.1`, …);
    /// empty offers or accepts none. A server that has some and shares
    /// none with its client fails the handshake.
    public var applicationProtocols: [String] = []
    /// The oldest version accepted.
    public var minimumVersion: Version = .tls12
    /// The newest version offered.
    public var maximumVersion: Version = .tls13

    /// A server presenting `certificateChain` with `privateKey`; add
    /// `verifiesPeer` and `trustRoots` for mutual TLS.
    public static func server(certificateChain: PEM, privateKey: PEM) -> TLSConfiguration {
        TLSConfiguration(certificateChain: certificateChain, privateKey: privateKey, verifiesPeer: false)
    }

    /// A client that checks the server's certificate against `trustRoots`
    /// and `serverName`.
    public static func client(serverName: String?, trustRoots: TrustRoots = .system) -> TLSConfiguration {
        TLSConfiguration(trustRoots: trustRoots, verifiesPeer: true, serverName: serverName)
    }
}
