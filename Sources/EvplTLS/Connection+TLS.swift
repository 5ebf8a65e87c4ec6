import Evpl

extension Connection {
    /// The connection's TLS session, when its protocol names a ``TLSContext``.
    var tlsSession: TLSSession? { streamSecurity as? TLSSession }

    /// Whether the stream runs TLS (its protocol names a ``TLSContext``).
    public var usesTLS: Bool { tlsSession != nil }

    /// The ALPN protocol the TLS handshake agreed on, if any; `nil` before
    /// `connected` and on a plain stream.
    public var tlsApplicationProtocol: String? {
        guard let session = tlsSession, session.isEstablished else { return nil }
        return session.applicationProtocol
    }

    /// Whether the TLS handshake resumed an earlier session (a ticket this
    /// client kept from an earlier connection; see
    /// ``TLSConfiguration/resumesSessions``) instead of running in full;
    /// `false` before the handshake completes and without TLS.
    public var tlsResumed: Bool {
        guard let session = tlsSession, session.isEstablished else { return false }
        return session.resumed
    }

    /// The TLS version in use (`TLSv1.3`, `TLSv1.2`); `nil` before
    /// `connected` and on a plain stream.
    public var tlsVersion: String? {
        guard let session = tlsSession, session.isEstablished else { return nil }
        return session.version
    }
}
