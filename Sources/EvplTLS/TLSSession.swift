import COpenSSL
import Evpl
#if canImport(Glibc)
import Glibc
#endif

/// The TLS state of one connection (OpenSSL's `SSL`), between the
/// connection's two queues and the wire.
///
/// OpenSSL reads and writes through a BIO of our own, never a socket:
/// ciphertext the backend received waits in ``ciphertext`` (pool buffers)
/// until the BIO hands it to OpenSSL, and the records OpenSSL writes go
/// straight into the connection's send queue (pool buffers), which the
/// backend then flushes like any other bytes. Plaintext is decrypted into
/// the connection's receive queue, so segmenters, pull consumers and
/// backpressure see a plain stream.
final class TLSSession: StreamSecurity {
    /// The connection owns the session.
    unowned(unsafe) let connection: Connection
    let context: TLSContext
    let ssl: OpaquePointer
    /// Where a client's tickets are kept and looked up: the server name
    /// and address; `nil` on a server or without resumption.
    let resumptionKey: String?
    /// Received ciphertext not yet given to OpenSSL.
    let ciphertext: ReceiveQueue
    /// The handshake completed and `connected` was reported.
    private(set) var isEstablished = false
    /// The peer's close_notify arrived: its end of stream is genuine.
    private(set) var closeNotifyReceived = false
    /// Sends made before the handshake completed, encrypted after it.
    private var pendingPlaintext: [UInt8] = []
    /// Bytes sent before the handshake completed and not yet encrypted.
    var pendingPlaintextCount: Int { pendingPlaintext.count }
    /// Why the BIO could not take a record (the pool at its ceiling).
    fileprivate var writeFailure: EvplError?
    /// The budget this session's OpenSSL state is charged to.
    private let chargedBudget: MemoryBudget?
    /// What a session is charged against the process's `MemoryBudget`:
    /// OpenSSL's own state for one connection, which the hostile-client
    /// audit put at about 11 KB before the ClientHello and 45 KB during a
    /// handshake, with its read and write buffers.
    static let memoryCharge = 48 << 10
    /// KeyUpdate messages the peer sent since ``keyUpdateWindowStart``.
    private var keyUpdates = 0
    private var keyUpdateWindowStart: UInt64 = 0
    /// The peer broke ``keyUpdateLimit``: OpenSSL is given no more of its
    /// ciphertext, and the connection ends.
    fileprivate private(set) var floodRefused = false

    /// At most this many KeyUpdate messages per ``keyUpdateWindow``: each
    /// one asking for an update costs a key derivation and a reply, and a
    /// peer that sends them without end would starve the loop. Honest
    /// peers update keys after gigabytes, not many times a minute.
    static let keyUpdateLimit = 32
    /// The window ``keyUpdateLimit`` counts over.
    static let keyUpdateWindow: UInt64 = 60_000_000_000

    init(connection: Connection, context: TLSContext) throws(EvplError) {
        let budget = connection.loop.bufferPool.budget
        if let budget, !budget.reserve(Self.memoryCharge) {
            throw EvplError(.resourceExhausted, operation: "tls session",
                            context: "\(connection.remoteAddress): process pool budget of \(budget.limit) bytes reached (a TLS session is charged \(Self.memoryCharge))")
        }
        guard let ssl = SSL_new(context.context) else {
            budget?.release(Self.memoryCharge)
            throw TLSErrors.openSSL(.tlsHandshake, "tls session", context: "\(connection.remoteAddress)")
        }
        self.chargedBudget = budget
        self.ssl = ssl
        self.connection = connection
        self.context = context
        let configuration = context.configuration
        resumptionKey = context.role == .client && configuration.resumesSessions
            ? "\(configuration.serverName ?? "")@\(connection.remoteAddress)" : nil
        ciphertext = ReceiveQueue(pool: connection.loop.bufferPool)
        guard let bio = BIO_new(connectionBIOMethod) else {
            throw TLSErrors.openSSL(.tlsHandshake, "tls session", context: "\(connection.remoteAddress)")
        }
        BIO_set_data(bio, Unmanaged.passUnretained(self).toOpaque())
        // One BIO both ways: the SSL takes the one reference.
        SSL_set_bio(ssl, bio, bio)
        SSL_set_msg_callback(ssl, observeMessage)
        guard context.role == .client else {
            SSL_set_accept_state(ssl)
            return
        }
        SSL_set_connect_state(ssl)
        if let resumptionKey, let ticket = context.takeTicket(for: resumptionKey) {
            // The SSL takes its own reference.
            SSL_set_session(ssl, ticket)
            SSL_SESSION_free(ticket)
        }
        guard let name = context.configuration.serverName else { return }
        if Self.isIPAddress(name) {
            // Checked against the certificate's IP addresses; SNI carries no address.
            X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), name)
        } else {
            _ = cevpl_ssl_set_server_name(ssl, name)
            if context.configuration.verifiesPeer { SSL_set1_host(ssl, name) }
        }
    }

    /// Whether `name` is an IPv4 or IPv6 address rather than a DNS name.
    static func isIPAddress(_ name: String) -> Bool {
        var address = in6_addr()
        return inet_pton(AF_INET, name, &address) == 1 || inet_pton(AF_INET6, name, &address) == 1
    }

    deinit {
        SSL_free(ssl)
        ciphertext.releaseAll()
        chargedBudget?.release(Self.memoryCharge)
    }

    /// The ALPN protocol both sides agreed on, once established.
    var applicationProtocol: String? {
        var name: UnsafePointer<UInt8>?
        var length: UInt32 = 0
        SSL_get0_alpn_selected(ssl, &name, &length)
        guard let name, length > 0 else { return nil }
        return String(decoding: UnsafeBufferPointer(start: name, count: Int(length)), as: UTF8.self)
    }

    /// The session that owns `ssl`, found through its BIO.
    static func owning(_ ssl: OpaquePointer?) -> TLSSession? {
        guard let bio = SSL_get_rbio(ssl), let data = BIO_get_data(bio) else { return nil }
        return Unmanaged<TLSSession>.fromOpaque(data).takeUnretainedValue()
    }

    /// Whether the handshake resumed an earlier session.
    var resumed: Bool { SSL_session_reused(ssl) == 1 }

    /// The version in use (`TLSv1.3`), once established.
    var version: String { String(cString: SSL_get_version(ssl)) }

    // MARK: Receiving

    /// Whether there is input to decrypt: ciphertext not yet given to
    /// OpenSSL, or a record OpenSSL holds (read, not yet decrypted out).
    var hasBufferedInput: Bool { ciphertext.unconsumedBytes > 0 || SSL_has_pending(ssl) != 0 }

    /// Starts a client's handshake: its ClientHello goes into the send queue.
    func start() {
        let result = SSL_do_handshake(ssl)
        if result <= 0 && !isRetry(SSL_get_error(ssl, result)) {
            connection.failAfterFlushing(failure(operation: "tls handshake"))
            return
        }
        connection.scheduleFlush()
    }

    /// Feeds the ciphertext that arrived to OpenSSL: advances the
    /// handshake, decrypts into the receive queue and delivers, and turns
    /// a close_notify into the peer's end of stream.
    func received() {
        if !isEstablished && !advanceHandshake() { return }
        var decrypted = false
        while connection.isOpen && !closeNotifyReceived && !connection.isFailing && hasBufferedInput {
            let space: UnsafeMutableRawBufferPointer
            do {
                space = try connection.receiveQueue.writableSpace()
            } catch {
                if error.code == .resourceExhausted && decrypted && !connection.isReceivePaused {
                    // Handing over what is decrypted frees the buffers it holds.
                    decrypted = false
                    connection.deliverReceived()
                    continue
                }
                if error.code == .resourceExhausted {
                    // The ciphertext waits here until the pool has room.
                    connection.loop.waitForMemory(connection)
                } else {
                    connection.tearDown(error: error)
                }
                return
            }
            let count = SSL_read(ssl, space.baseAddress, Int32(clamping: space.count))
            if count > 0 {
                connection.receiveQueue.commit(Int(count))
                decrypted = true
                // Nothing left to decrypt: spare OpenSSL the read that would only say so.
                if ciphertext.unconsumedBytes == 0 && SSL_has_pending(ssl) == 0 { break }
                continue
            }
            if floodRefused {
                refuseFlood()
                return
            }
            let code = SSL_get_error(ssl, count)
            if code == SSL_ERROR_ZERO_RETURN {
                closeNotifyReceived = true
            } else if !isRetry(code) {
                // OpenSSL queued the fatal alert that names the failure.
                connection.failAfterFlushing(failure(operation: isEstablished ? "tls receive" : "tls handshake"))
                return
            }
            break
        }
        // Alerts, KeyUpdates and tickets OpenSSL wrote meanwhile.
        if connection.hasQueuedWireBytes { connection.scheduleFlush() }
        guard connection.isOpen else { return }
        if decrypted { connection.deliverReceived() }
        if closeNotifyReceived { connection.peerFinished() }
    }

    /// Counts a KeyUpdate the peer sent; past the limit, stops feeding
    /// OpenSSL (the BIO reports no more ciphertext, so the read in
    /// progress returns at once).
    fileprivate func peerSentKeyUpdate() {
        let now = MonotonicClock.nanoseconds()
        if now &- keyUpdateWindowStart > Self.keyUpdateWindow {
            keyUpdateWindowStart = now
            keyUpdates = 0
        }
        keyUpdates += 1
        if keyUpdates > Self.keyUpdateLimit { floodRefused = true }
    }

    /// Ends a connection that broke the KeyUpdate limit: a close_notify
    /// alert, then the close, with `.tls`.
    private func refuseFlood() {
        sendCloseNotify()
        connection.failAfterFlushing(EvplError(.tls, operation: "tls receive",
                                               context: "\(connection.remoteAddress): more than \(Self.keyUpdateLimit) KeyUpdate messages in \(Self.keyUpdateWindow / 1_000_000_000) s"))
    }

    /// Drives the handshake with the ciphertext that arrived, holding no
    /// plaintext buffer while it runs (a connection in its handshake
    /// costs the pool nothing). True once it has completed and `connected`
    /// was reported; false while it waits for more, or after it failed.
    private func advanceHandshake() -> Bool {
        let result = SSL_do_handshake(ssl)
        // Handshake messages (and a fatal alert) OpenSSL wrote meanwhile.
        if connection.hasQueuedWireBytes { connection.scheduleFlush() }
        guard result == 1 else {
            if !isRetry(SSL_get_error(ssl, result)) { connection.failAfterFlushing(failure(operation: "tls handshake")) }
            return false
        }
        if let refusal = pinRefusal() {
            connection.failAfterFlushing(refusal)
            return false
        }
        isEstablished = true
        connection.securityEstablished()
        return connection.isOpen
    }

    // MARK: Sending

    /// The most ciphertext `count` bytes of plaintext become: records of at
    /// most 16 KiB, each with at most 128 bytes of header, nonce, padding
    /// and tag (AES-GCM in TLS 1.3 adds 22).
    static func ciphertextBound(for count: Int) -> Int {
        count + (count + 16_383) / 16_384 * 128
    }

    /// Refuses, before anything is encrypted, a send whose records the
    /// pool could not hold: the stream stays usable and the caller can
    /// retry once the queue drains, as without TLS. During the handshake,
    /// what waits to be encrypted counts too, so that sends made before
    /// it completes stay within what the pool could hold.
    ///
    /// - Throws: `EvplError` `.resourceExhausted`.
    func checkRoom(for count: Int) throws(EvplError) {
        try connection.checkWireRoom(for: Self.ciphertextBound(for: pendingPlaintext.count + count))
    }

    /// Encrypts `bytes` into the send queue, or keeps them for the end of
    /// the handshake.
    ///
    /// - Throws: `EvplError` `.resourceExhausted` when the pool cannot
    ///   hold the records (the stream is then unusable: the caller tears
    ///   the connection down), `.tls` when OpenSSL fails.
    func send(_ bytes: UnsafeRawBufferPointer) throws(EvplError) {
        // Behind bytes still pending, in order.
        guard isEstablished && pendingPlaintext.isEmpty else {
            pendingPlaintext += bytes
            return
        }
        try encrypt(bytes)
    }

    private func encrypt(_ bytes: UnsafeRawBufferPointer) throws(EvplError) {
        var offset = 0
        while offset < bytes.count {
            let count = SSL_write(ssl, bytes.baseAddress.unsafelyUnwrapped + offset, Int32(clamping: bytes.count - offset))
            if count > 0 {
                offset += Int(count)
                continue
            }
            if let writeFailure { throw writeFailure }
            throw failure(operation: "tls send")
        }
    }

    /// Encrypts what was sent during the handshake, a record at a time
    /// while the send queue has room (leaving the pool's receive
    /// reserve); the rest stays pending until a write makes room: the
    /// handshake's own messages, and other connections, took some of what
    /// the sends were checked against. With nothing queued, one record
    /// may use the reserve, so that its write comes back for the next.
    func sendPending() throws(EvplError) {
        guard isEstablished else { return }
        var encrypted = 0
        defer { pendingPlaintext.removeFirst(encrypted) }
        while encrypted < pendingPlaintext.count {
            let count = min(16_384, pendingPlaintext.count - encrypted)
            do throws(EvplError) {
                try connection.checkWireRoom(for: Self.ciphertextBound(for: count), intoReserve: !connection.hasQueuedWireBytes)
            } catch where error.code == .resourceExhausted {
                return
            }
            let result = pendingPlaintext.withUnsafeBytes { bytes in
                Result { () throws(EvplError) in try encrypt(UnsafeRawBufferPointer(rebasing: bytes[encrypted..<encrypted + count])) }
            }
            try result.get()
            encrypted += count
        }
    }

    /// Queues the close_notify alert: the peer learns that the stream
    /// ends here, and was not cut.
    func sendCloseNotify() {
        _ = SSL_shutdown(ssl)
        ERR_clear_error()
    }

    // MARK: Errors

    /// Why the peer's certificate fails the configured pins; `nil` when
    /// nothing is pinned or its public key is.
    private func pinRefusal() -> EvplError? {
        let pins = context.configuration.pinnedPublicKeys
        guard !pins.isEmpty else { return nil }
        let peer = "\(connection.remoteAddress)"
        guard let certificate = SSL_get0_peer_certificate(ssl) else {
            return EvplError(.tlsCertificate, operation: "tls handshake", context: "\(peer): no certificate to check the pins against")
        }
        do {
            let pin = try TLSErrors.publicKeyPin(of: certificate)
            guard pins.contains(pin) else {
                return EvplError(.tlsCertificate, operation: "tls handshake", context: "\(peer): the certificate's public key is not pinned")
            }
            return nil
        } catch {
            return error
        }
    }

    private func isRetry(_ code: Int32) -> Bool {
        code == SSL_ERROR_WANT_READ || code == SSL_ERROR_WANT_WRITE
    }

    /// The failure OpenSSL just reported, typed: a certificate the
    /// verifier refused, a failed handshake, or a record error.
    private func failure(operation: String) -> EvplError {
        if let writeFailure {
            // OpenSSL failed because its records found no room in the pool.
            ERR_clear_error()
            return writeFailure
        }
        let peer = "\(connection.remoteAddress)"
        let verification = SSL_get_verify_result(ssl)
        if !isEstablished && verification != X509_V_OK {
            ERR_clear_error()
            let reason = String(cString: X509_verify_cert_error_string(verification))
            return EvplError(.tlsCertificate, operation: operation, context: "\(peer): \(reason)")
        }
        return TLSErrors.openSSL(isEstablished ? .tls : .tlsHandshake, operation, context: peer)
    }
}

// MARK: The connection BIO

/// The BIO type through which OpenSSL reads a session's ciphertext queue and
/// writes into its connection's send queue.
nonisolated(unsafe) private let connectionBIOMethod: OpaquePointer = {
    // Created once and never changed: sharing it across threads is safe.
    let method = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "evpl connection")!
    BIO_meth_set_write_ex(method, writeCiphertext)
    BIO_meth_set_read_ex(method, readCiphertext)
    BIO_meth_set_ctrl(method, controlBIO)
    BIO_meth_set_create(method) { bio in
        BIO_set_init(bio, 1)
        return 1
    }
    BIO_meth_set_destroy(method) { _ in 1 }
    return method
}()

private func session(of bio: OpaquePointer?) -> TLSSession {
    Unmanaged<TLSSession>.fromOpaque(BIO_get_data(bio)!).takeUnretainedValue()
}

private func writeCiphertext(_ bio: OpaquePointer?, _ data: UnsafePointer<CChar>?, _ length: Int, _ written: UnsafeMutablePointer<Int>?) -> Int32 {
    cevpl_bio_clear_retry(bio)
    let session = session(of: bio)
    let connection = session.connection
    do {
        try connection.queueWireBytes(copying: UnsafeRawBufferPointer(start: data, count: length))
    } catch {
        session.writeFailure = error
        return 0
    }
    written?.pointee = length
    return 1
}

private func readCiphertext(_ bio: OpaquePointer?, _ buffer: UnsafeMutablePointer<CChar>?, _ length: Int, _ read: UnsafeMutablePointer<Int>?) -> Int32 {
    cevpl_bio_clear_retry(bio)
    let session = session(of: bio)
    let queue = session.ciphertext
    guard queue.unconsumedBytes > 0, !session.floodRefused else {
        cevpl_bio_set_retry_read(bio)
        return 0
    }
    let count = min(length, queue.unconsumedBytes)
    queue.view(length: count).copyBytes(to: UnsafeMutableRawBufferPointer(start: buffer, count: count))
    queue.consume(count)
    read?.pointee = count
    return 1
}

/// OpenSSL's report of each protocol message: counts the KeyUpdates
/// (handshake type 24) the peer sends.
private func observeMessage(_ written: Int32, _ version: Int32, _ contentType: Int32, _ bytes: UnsafeRawPointer?, _ length: Int,
                            _ ssl: OpaquePointer?, _ argument: UnsafeMutableRawPointer?) {
    let handshake: Int32 = 22
    let keyUpdate: UInt8 = 24
    guard written == 0, contentType == handshake, length > 0, let bytes, bytes.load(as: UInt8.self) == keyUpdate,
          let session = TLSSession.owning(ssl) else { return }
    session.peerSentKeyUpdate()
}

private func controlBIO(_ bio: OpaquePointer?, _ command: Int32, _ argument: Int, _ pointer: UnsafeMutableRawPointer?) -> Int {
    command == BIO_CTRL_FLUSH ? 1 : 0
}
