import COpenSSL
import Evpl

/// A ``TLSConfiguration`` made ready for use: certificates parsed, key
/// checked against them, trust roots loaded (OpenSSL's `SSL_CTX`). Made
/// once and shared by every connection that names it in its
/// `EvplProtocol`, on any loop.
public final class TLSContext: @unchecked Sendable, Hashable {
    // Sendable because the SSL_CTX is only read after `init`: OpenSSL
    // allows SSL objects to be created from one context on many threads
    // as long as nobody changes its settings.

    /// Which end of the handshake the context plays.
    public enum Role: Sendable {
        /// Accepts connections (a listener's protocol).
        case server
        /// Opens connections (a connect's protocol).
        case client
    }

    /// The end of the handshake this context plays.
    public let role: Role
    /// What it was made from.
    public let configuration: TLSConfiguration
    let context: OpaquePointer
    /// The ALPN protocols in the wire format (each prefixed by its length).
    let alpnWire: [UInt8]
    /// A client's unused session tickets, by server name and address,
    /// newest last.
    private let tickets = Locked<[String: [Ticket]]>([:])
    /// Tickets kept per server: a server sends two per connection by
    /// default, and a peer that sends more cannot make the cache grow.
    static let ticketsPerServer = 4
    /// Servers whose tickets are kept; past it, the cache starts over.
    static let serversWithTickets = 1024

    /// Prepares `configuration` for `role`.
    ///
    /// - Throws: `EvplError` `.invalidArgument` naming what OpenSSL
    ///   refused: an unreadable certificate or key, a key that does not
    ///   match the certificate, a server without a certificate, an ALPN
    ///   name that is empty or longer than 255 bytes.
    public init(_ configuration: TLSConfiguration, role: Role) throws(EvplError) {
        self.role = role
        self.configuration = configuration
        var wire: [UInt8] = []
        for name in configuration.applicationProtocols {
            let bytes = Array(name.utf8)
            guard (1...255).contains(bytes.count) else {
                throw EvplError(.invalidArgument, operation: "tls context", context: "ALPN protocol name \"\(name)\" must be 1 to 255 bytes")
            }
            wire.append(UInt8(bytes.count))
            wire += bytes
        }
        alpnWire = wire
        guard let context = SSL_CTX_new(role == .server ? TLS_server_method() : TLS_client_method()) else {
            throw TLSErrors.openSSL(.invalidArgument, "tls context", context: "SSL_CTX_new")
        }
        self.context = context
        try configure(role)
    }

    deinit {
        tickets.withLock { $0.values.joined().forEach { SSL_SESSION_free($0.session) } }
        SSL_CTX_free(context)
    }

    /// Keeps `ticket` (a reference the caller hands over) for `server`.
    func keep(ticket: OpaquePointer, for server: String) {
        let dropped: [Ticket] = tickets.withLock { cache in
            var dropped: [Ticket] = []
            if cache[server] == nil && cache.count >= Self.serversWithTickets {
                dropped = Array(cache.values.joined())
                cache.removeAll()
            }
            cache[server, default: []].append(Ticket(session: ticket))
            if let kept = cache[server], kept.count > Self.ticketsPerServer {
                dropped += kept.prefix(kept.count - Self.ticketsPerServer)
                cache[server] = Array(kept.suffix(Self.ticketsPerServer))
            }
            return dropped
        }
        dropped.forEach { SSL_SESSION_free($0.session) }
    }

    /// The newest ticket kept for `server`, a reference the caller now
    /// owns. A TLS 1.3 ticket is handed out once (RFC 8446, appendix C.4);
    /// a TLS 1.2 session stays for the next connection too, since its
    /// server issues no new one on resumption.
    func takeTicket(for server: String) -> OpaquePointer? {
        tickets.withLock { cache in
            guard let ticket = cache[server]?.last else { return nil }
            if SSL_SESSION_get_protocol_version(ticket.session) < cevpl_tls1_3_version() {
                SSL_SESSION_up_ref(ticket.session)
                return ticket.session
            }
            cache[server]?.removeLast()
            if cache[server]?.isEmpty == true { cache[server] = nil }
            return ticket.session
        }
    }

    private func configure(_ role: Role) throws(EvplError) {
        cevpl_ssl_ctx_set_partial_writes(context)
        let profile = configuration.profile
        let minimumVersion = max(configuration.minimumVersion, profile.minimumVersion)
        guard cevpl_ssl_ctx_set_min_version(context, Int32(minimumVersion.rawValue)) == 1,
              cevpl_ssl_ctx_set_max_version(context, Int32(configuration.maximumVersion.rawValue)) == 1,
              minimumVersion <= configuration.maximumVersion else {
            throw EvplError(.invalidArgument, operation: "tls context",
                            context: "versions \(configuration.minimumVersion) to \(configuration.maximumVersion) in the \(profile.rawValue) profile")
        }
        // OpenSSL puts AES-256-GCM first; AES-128-GCM is as safe, faster
        // (14% on the test machine), and BoringSSL, Go and rustls prefer it.
        guard SSL_CTX_set_ciphersuites(context, "TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256") == 1 else {
            throw TLSErrors.openSSL(.invalidArgument, "tls context", context: "TLS 1.3 cipher suites")
        }
        guard SSL_CTX_set_cipher_list(context, TLSConfiguration.Profile.tls12CipherSuites) == 1 else {
            throw TLSErrors.openSSL(.invalidArgument, "tls context", context: "TLS 1.2 cipher suites")
        }
        guard cevpl_ssl_ctx_set_groups(context, TLSConfiguration.Profile.groups) == 1 else {
            throw TLSErrors.openSSL(.invalidArgument, "tls context", context: "key exchange groups \(TLSConfiguration.Profile.groups)")
        }
        if role == .server { cevpl_ssl_ctx_prefer_own_ciphers(context) }
        if let chain = configuration.certificateChain {
            try useCertificateChain(chain)
            guard let key = configuration.privateKey else {
                throw EvplError(.invalidArgument, operation: "tls context", context: "a certificate chain without its private key")
            }
            try usePrivateKey(key)
        } else if role == .server {
            throw EvplError(.invalidArgument, operation: "tls context", context: "a server needs a certificate chain and its private key")
        }
        if configuration.verifiesPeer {
            try loadTrustRoots(configuration.trustRoots)
            SSL_CTX_set_verify(context, SSL_VERIFY_PEER | (role == .server ? SSL_VERIFY_FAIL_IF_NO_PEER_CERT : 0), nil)
        } else {
            SSL_CTX_set_verify(context, SSL_VERIFY_NONE, nil)
        }
        if role == .server {
            guard configuration.ticketsPerHandshake >= 0, SSL_CTX_set_num_tickets(context, configuration.ticketsPerHandshake) == 1 else {
                throw EvplError(.invalidArgument, operation: "tls context", context: "\(configuration.ticketsPerHandshake) tickets per handshake")
            }
            // TLS 1.2 resumes through its own tickets and the server's
            // session cache, whatever the TLS 1.3 ticket count.
            if configuration.ticketsPerHandshake == 0 { cevpl_ssl_ctx_resume_nothing(context) }
        }
        if role == .client && configuration.resumesSessions {
            cevpl_ssl_ctx_cache_client_sessions(context)
            SSL_CTX_sess_set_new_cb(context, keepNewSession)
        } else if role == .client {
            cevpl_ssl_ctx_cache_nothing(context)
        }
        guard !alpnWire.isEmpty else { return }
        if role == .client {
            // 0 is success for this one call.
            guard SSL_CTX_set_alpn_protos(context, alpnWire, UInt32(alpnWire.count)) == 0 else {
                throw TLSErrors.openSSL(.invalidArgument, "tls context", context: "ALPN protocols")
            }
        } else {
            SSL_CTX_set_alpn_select_cb(context, selectApplicationProtocol, Unmanaged.passUnretained(self).toOpaque())
        }
    }

    private func useCertificateChain(_ chain: TLSConfiguration.PEM) throws(EvplError) {
        switch chain {
        case .file(let path):
            guard SSL_CTX_use_certificate_chain_file(context, path) == 1 else {
                throw TLSErrors.openSSL(.invalidArgument, "tls certificate chain", context: path)
            }
        case .bytes(let pem):
            let certificates = try TLSErrors.certificates(in: pem, operation: "tls certificate chain")
            defer { certificates.forEach { X509_free($0) } }
            guard let leaf = certificates.first, SSL_CTX_use_certificate(context, leaf) == 1 else {
                throw TLSErrors.openSSL(.invalidArgument, "tls certificate chain", context: "no certificate in the PEM data")
            }
            for intermediate in certificates.dropFirst() where cevpl_ssl_ctx_add_chain_certificate(context, intermediate) != 1 {
                throw TLSErrors.openSSL(.invalidArgument, "tls certificate chain", context: "an intermediate certificate")
            }
        }
    }

    /// Loads the chain's key; OpenSSL refuses one that does not match the
    /// certificate already loaded ("key values mismatch").
    private func usePrivateKey(_ key: TLSConfiguration.PEM) throws(EvplError) {
        switch key {
        case .file(let path):
            guard SSL_CTX_use_PrivateKey_file(context, path, SSL_FILETYPE_PEM) == 1 else {
                throw TLSErrors.openSSL(.invalidArgument, "tls private key", context: path)
            }
        case .bytes(let pem):
            let parsed = pem.withUnsafeBytes { raw -> OpaquePointer? in
                guard let bio = BIO_new_mem_buf(raw.baseAddress, Int32(raw.count)) else { return nil }
                defer { BIO_free(bio) }
                return PEM_read_bio_PrivateKey(bio, nil, nil, nil)
            }
            guard let parsed else { throw TLSErrors.openSSL(.invalidArgument, "tls private key", context: "PEM data") }
            defer { EVP_PKEY_free(parsed) }
            guard SSL_CTX_use_PrivateKey(context, parsed) == 1 else {
                throw TLSErrors.openSSL(.invalidArgument, "tls private key", context: "PEM data")
            }
        }
    }

    private func loadTrustRoots(_ roots: TLSConfiguration.TrustRoots) throws(EvplError) {
        switch roots {
        case .system:
            guard SSL_CTX_set_default_verify_paths(context) == 1 else {
                throw TLSErrors.openSSL(.invalidArgument, "tls trust roots", context: "the system's")
            }
        case .certificates(.file(let path)):
            guard SSL_CTX_load_verify_locations(context, path, nil) == 1 else {
                throw TLSErrors.openSSL(.invalidArgument, "tls trust roots", context: path)
            }
        case .certificates(.bytes(let pem)):
            let certificates = try TLSErrors.certificates(in: pem, operation: "tls trust roots")
            defer { certificates.forEach { X509_free($0) } }
            let store = SSL_CTX_get_cert_store(context)
            for certificate in certificates where X509_STORE_add_cert(store, certificate) != 1 {
                throw TLSErrors.openSSL(.invalidArgument, "tls trust roots", context: "a CA certificate")
            }
        }
    }

    /// Contexts are equal when they are the same object.
    public static func == (lhs: TLSContext, rhs: TLSContext) -> Bool { lhs === rhs }

    /// Hashes the object's identity.
    public func hash(into hasher: inout Hasher) { hasher.combine(ObjectIdentifier(self)) }
}

/// A session a client context keeps for resumption (OpenSSL's
/// `SSL_SESSION`, one reference held).
struct Ticket: @unchecked Sendable {
    // @unchecked: the context touches kept tickets only under its lock. A
    // TLS 1.3 ticket goes to one connection; a TLS 1.2 session may serve
    // connections on several threads, which OpenSSL allows: sessions are
    // reference-counted and its own cache shares them the same way.
    let session: OpaquePointer
}

/// A client's new session (a TLS 1.3 ticket, or a TLS 1.2 session): kept
/// in its context for the next connection to the same server. Returning 1
/// keeps OpenSSL's reference.
private func keepNewSession(_ ssl: OpaquePointer?, _ newSession: OpaquePointer?) -> Int32 {
    guard let newSession, SSL_SESSION_is_resumable(newSession) == 1,
          let session = TLSSession.owning(ssl), let server = session.resumptionKey else { return 0 }
    session.context.keep(ticket: newSession, for: server)
    return 1
}

/// The server's ALPN choice: its first preference the client offers too,
/// or a fatal `no_application_protocol` alert when they share none.
private func selectApplicationProtocol(
    _ ssl: OpaquePointer?, _ chosen: UnsafeMutablePointer<UnsafePointer<UInt8>?>?, _ chosenLength: UnsafeMutablePointer<UInt8>?,
    _ offered: UnsafePointer<UInt8>?, _ offeredLength: UInt32, _ argument: UnsafeMutableRawPointer?
) -> Int32 {
    guard let argument else { return SSL_TLSEXT_ERR_ALERT_FATAL }
    let context = Unmanaged<TLSContext>.fromOpaque(argument).takeUnretainedValue()
    return context.alpnWire.withUnsafeBufferPointer { ours -> Int32 in
        var selected: UnsafeMutablePointer<UInt8>?
        var selectedLength: UInt8 = 0
        let outcome = SSL_select_next_proto(&selected, &selectedLength, ours.baseAddress, UInt32(ours.count), offered, offeredLength)
        guard outcome == OPENSSL_NPN_NEGOTIATED, let selected else { return SSL_TLSEXT_ERR_ALERT_FATAL }
        // `selected` points into `alpnWire`, which lives as long as the context.
        chosen?.pointee = UnsafePointer(selected)
        chosenLength?.pointee = selectedLength
        return SSL_TLSEXT_ERR_OK
    }
}
