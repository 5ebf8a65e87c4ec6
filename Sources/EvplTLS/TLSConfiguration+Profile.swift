import Evpl

extension TLSConfiguration {
    /// The protocol versions, cipher suites and key exchange groups an
    /// endpoint accepts: Mozilla's server-side TLS recommendations
    /// (wiki.mozilla.org/Security/Server_Side_TLS).
    ///
    /// Both exchange keys over X25519, P-256 and P-384 only: X448, P-521 and
    /// the finite-field groups add nothing a peer needs, and a client that
    /// asks for ffdhe8192 would cost a server about 150 ms of CPU per
    /// handshake. A server picks the cipher suite by its own preference
    /// (AES-128-GCM first), ChaCha20-Poly1305 for a client that lists it
    /// first (one without AES instructions).
    public enum Profile: String, Sendable, CaseIterable {
        /// Mozilla's "intermediate", the default: TLS 1.3, and TLS 1.2
        /// with ECDHE key exchange and an AEAD cipher only
        /// (ECDHE-ECDSA or ECDHE-RSA with AES-128-GCM, AES-256-GCM or
        /// ChaCha20-Poly1305). No CBC suite (LUCKY13 and its kin), no RSA
        /// key exchange (no forward secrecy), no finite-field DHE.
        case intermediate
        /// Mozilla's "modern": TLS 1.3 only, for peers known to have it; a
        /// TLS 1.2 peer fails the handshake.
        case modern

        /// The TLS 1.2 cipher suites, in the server's order of preference.
        static let tls12CipherSuites = [
            "ECDHE-ECDSA-AES128-GCM-SHA256", "ECDHE-RSA-AES128-GCM-SHA256",
            "ECDHE-ECDSA-AES256-GCM-SHA384", "ECDHE-RSA-AES256-GCM-SHA384",
            "ECDHE-ECDSA-CHACHA20-POLY1305", "ECDHE-RSA-CHACHA20-POLY1305",
        ].joined(separator: ":")

        /// The key exchange groups, in order of preference.
        static let groups = "X25519:P-256:P-384"

        /// The oldest version the profile allows.
        var minimumVersion: Version {
            switch self {
            case .intermediate: return .tls12
            case .modern: return .tls13
            }
        }
    }
}
