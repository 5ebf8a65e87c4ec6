import COpenSSL
import Evpl
#if canImport(Glibc)
import Glibc
#endif

/// What a TLS endpoint presents and accepts: its certificate and key,
/// whom it trusts, the name it expects, ALPN and versions. Turn it into a
/// ``TLSContext`` once, then name that context in the `EvplProtocol` of a
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
    /// The versions, cipher suites and key exchange groups accepted:
    /// Mozilla's "intermediate" by default (TLS 1.2 with ECDHE and AEAD
    /// ciphers only, and TLS 1.3), or its "modern" (TLS 1.3 only).
    public var profile: Profile = .intermediate
    /// The oldest version accepted (the profile's oldest if that is newer).
    public var minimumVersion: Version = .tls12
    /// The newest version offered.
    public var maximumVersion: Version = .tls13
    /// On a client, whether to keep the session tickets a server sends and
    /// offer one when the context next connects to the same server name
    /// and address: the handshake is then abbreviated (no certificate, no
    /// signature). Each ticket is offered once (RFC 8446, appendix C.4).
    /// See `Connection.tlsResumed`.
    public var resumesSessions = true
    /// On a server, how many TLS 1.3 session tickets to send after each
    /// full handshake, each good for one resumption: OpenSSL's two by
    /// default, for clients that open connections in pairs. 0 sends none,
    /// as NIO-SSL's server does, and also turns TLS 1.2 resumption off (no
    /// session tickets, no session cache): no client can resume, over
    /// either version, and each handshake costs both ends less (see
    /// ``resumesSessions`` for the client side).
    public var ticketsPerHandshake = 2
    /// Public key pins: the SHA-256 digests of the SubjectPublicKeyInfo
    /// (see ``publicKeyPin(of:)``) of which the peer's leaf certificate
    /// must carry one, on top of the usual verification (or instead of
    /// it, with `verifiesPeer` off). Empty pins nothing. A peer whose key
    /// is not pinned ends the connection with `.tlsCertificate` before
    /// `connected` and before anything is sent.
    public var pinnedPublicKeys: [[UInt8]] = []

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

extension TLSConfiguration {
    /// The pin of the first certificate in `certificate`: the SHA-256 of
    /// its SubjectPublicKeyInfo, as `openssl x509 -pubkey -noout | openssl
    /// pkey -pubin -outform der | openssl dgst -sha256` prints it (base64
    /// of these bytes is HPKP's and curl's `sha256//` form).
    ///
    /// - Throws: `EvplError` `.invalidArgument` when there is no
    ///   readable certificate.
    public static func publicKeyPin(of certificate: PEM) throws(EvplError) -> [UInt8] {
        let certificates = try TLSErrors.certificates(from: certificate, operation: "public key pin")
        defer { certificates.forEach { X509_free($0) } }
        return try TLSErrors.publicKeyPin(of: certificates[0])
    }

    /// A throwaway identity: a fresh ECDSA P-256 key and a self-signed
    /// certificate for `names` (DNS names or IP addresses; the first is
    /// also the common name), valid from now for `days`. For demos and
    /// tests: a client trusts it by naming the certificate in its
    /// ``TrustRoots/certificates(_:)``.
    ///
    /// - Throws: `EvplError` `.invalidArgument` with OpenSSL's reason
    ///   (for instance a name that is neither a DNS name nor an address).
    public static func selfSignedIdentity(for names: [String], days: Int = 1) throws(EvplError) -> (certificateChain: PEM, privateKey: PEM) {
        guard let first = names.first else {
            throw EvplError(.invalidArgument, operation: "self-signed certificate", context: "no name")
        }
        let alternativeNames = names.map { (TLSSession.isIPAddress($0) ? "IP:" : "DNS:") + $0 }.joined(separator: ",")
        var certificate: UnsafeMutablePointer<CChar>?
        var key: UnsafeMutablePointer<CChar>?
        var certificateLength = 0
        var keyLength = 0
        defer {
            cevpl_openssl_free(certificate)
            cevpl_openssl_free(key)
        }
        guard cevpl_make_self_signed(first, alternativeNames, days, &certificate, &certificateLength, &key, &keyLength) == 1,
              let certificate, let key else {
            throw TLSErrors.openSSL(.invalidArgument, "self-signed certificate", context: names.joined(separator: ", "))
        }
        let bytes = { (pointer: UnsafeMutablePointer<CChar>, count: Int) in
            Array(UnsafeRawBufferPointer(start: pointer, count: count).bindMemory(to: UInt8.self))
        }
        return (.bytes(bytes(certificate, certificateLength)), .bytes(bytes(key, keyLength)))
    }
}
