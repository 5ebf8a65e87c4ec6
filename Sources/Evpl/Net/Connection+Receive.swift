import CEvplLinux
#if canImport(Glibc)
import Glibc
#endif

/// Why a connection is not receiving. Receiving resumes when no reason is left.
struct ReceivePauses: OptionSet {
    let rawValue: UInt8
    /// The application called ``Connection/pauseReceiving()``.
    static let application = ReceivePauses(rawValue: 1 << 0)
    /// More than the send high watermark waits to be sent.
    static let backpressure = ReceivePauses(rawValue: 1 << 1)
    /// The loop's buffer pool is at its ceiling.
    static let memory = ReceivePauses(rawValue: 1 << 2)
    /// A graceful shutdown waits for block requests in flight.
    static let shutdown = ReceivePauses(rawValue: 1 << 3)
    /// An async consumer has a window's worth of bytes it has not taken.
    static let consumer = ReceivePauses(rawValue: 1 << 4)
}

extension Connection {
    // MARK: Flow control

    /// Stops delivering ``ConnectionEvent/received(_:)`` until ``resumeReceiving()``.
    ///
    /// Incoming data waits in the kernel (the socket backend stops reading,
    /// the io_uring backend cancels its multishot receive), so the peer's
    /// window closes and it stops sending. Called from a `received`
    /// callback, no further message of the bytes already read is delivered
    /// until the resume. Pausing twice is harmless.
    public func pauseReceiving() {
        checkThread()
        pauseReceiving(.application)
    }

    /// Undoes ``pauseReceiving()``: delivery restarts in the next loop
    /// iteration, with the bytes that arrived meanwhile. Receiving stays
    /// paused while the connection's own flow control holds it (too many
    /// bytes queued to send, or the buffer pool at its ceiling).
    public func resumeReceiving() {
        checkThread()
        resumeReceiving(.application)
    }

    /// Whether receiving is paused, by the application or by flow control.
    public var isReceivingPaused: Bool { !receivePauses.isEmpty }

    func pauseReceiving(_ reason: ReceivePauses) {
        guard !receivePauses.contains(reason) else { return }
        let wasReceiving = receivePauses.isEmpty
        receivePauses.insert(reason)
        guard wasReceiving else { return }
        loop.statistics.receivePauses &+= 1
        stopReceiving()
    }

    func resumeReceiving(_ reason: ReceivePauses) {
        guard receivePauses.contains(reason) else { return }
        receivePauses.remove(reason)
        guard receivePauses.isEmpty, isOpen else { return }
        // No readiness edge announces data that waited while paused: look
        // for it at the end of this iteration.
        scheduleReadPass()
    }

    func scheduleReadPass() {
        guard !readPending else { return }
        readPending = true
        loop.pendingReads.append(self)
    }

    // MARK: Events

    /// Ends the connecting state: `code` is 0 on success, else the errno.
    func connectCompleted(errno code: Int32) {
        guard state == .connecting else { return }
        if code == ECONNRESET || code == EPIPE {
            // The handshake completed and the peer reset at once: the
            // connection existed, so it connects, then ends with the reset.
            state = .connected
            handler(self, .connected)
            tearDown(error: EvplError(errno: code, operation: "receive", context: "\(remoteAddress)"))
            return
        }
        if code != 0 {
            tearDown(error: EvplError(errno: code, operation: "connect", context: "\(remoteAddress)"))
            return
        }
        state = .connected
        if let tls = security {
            // `connected` waits for the handshake, which starts with our ClientHello.
            tls.start()
        } else {
            handler(self, .connected)
        }
        guard state != .closed else { return }
        if finishAfterConnect && state == .connected && security == nil { state = .finishing }
        flush()
        startReceiving()
    }

    /// The TLS handshake completed: reports `connected`, encrypts what was
    /// sent meanwhile, and finishes if ``finish()`` was called meanwhile.
    package func securityEstablished() {
        handler(self, .connected)
        guard isOpen, let tls = security else { return }
        encryptPending(tls)
        if isOpen { scheduleFlush() }
    }

    /// Encrypts what was sent during the handshake, as much as the pool
    /// has room for (the rest after later writes), then finishes if
    /// ``finish()`` waited for it; a failure ends the connection with its
    /// error.
    func encryptPending(_ tls: any StreamSecurity) {
        do throws(EvplError) {
            try tls.sendPending()
        } catch {
            tearDown(error: error)
            return
        }
        if hasQueuedWireBytes {
            scheduleFlush()
        } else if tls.pendingPlaintextCount > 0 && tls.isEstablished && isOpen {
            loop.waitForMemoryToSend(self)
        }
        if finishAfterConnect && tls.isEstablished && tls.pendingPlaintextCount == 0 && isOpen {
            finishAfterConnect = false
            finish()
        }
    }

    /// The pool has room again: resumes receiving paused for it, and
    /// encrypts more of what was sent during a TLS handshake.
    func memoryReturned() {
        if let tls = security, tls.pendingPlaintextCount > 0, isOpen { encryptPending(tls) }
        resumeReceiving(.memory)
    }

    /// Hands what the backend received on: through TLS when the stream
    /// has it, straight to delivery otherwise.
    @inline(__always)
    func wireReceived() {
        if let tls = security {
            tls.received()
        } else {
            deliverReceived()
        }
    }

    /// Whether the socket may be read now: open, the peer still sending,
    /// and receiving not paused.
    @inline(__always)
    var mayReceive: Bool { isOpen && !inputClosed && receivePauses.isEmpty }

    /// After a resume: delivers what arrived while paused, then the end of
    /// stream if it came too.
    func resumeDelivery() {
        guard isOpen && receivePauses.isEmpty else { return }
        // Ciphertext left when the pool ran out of room for its plaintext.
        if let tls = security, tls.hasBufferedInput { tls.received() }
        if receiveQueue.count > 0 { deliverReceived() }
        if inputClosePending && receivePauses.isEmpty && isOpen {
            inputClosePending = false
            peerFinished()
        }
    }

    /// Hands the received bytes to the handler: all of them on a raw
    /// stream, each whole message with a segmenter. Stops as soon as
    /// receiving is paused; the rest waits in the queue.
    package func deliverReceived() {
        if let pullConsumer {
            if !handshakeEnded && receiveQueue.count > 0 && timeouts.handshakeEndsWithFirstMessage { endHandshake() }
            // The bytes wait in the queue until the consumer takes them.
            if receiveQueue.count >= pullWindow { pauseReceiving(.consumer) }
            pullConsumer()
            return
        }
        guard let segmenter else {
            guard receivePauses.isEmpty, receiveQueue.count > 0 else { return }
            deliver(length: receiveQueue.count)
            return
        }
        while receiveQueue.count > 0 && isOpen && receivePauses.isEmpty {
            switch segmenter(receiveQueue.view(length: receiveQueue.count)) {
            case .needMoreBytes:
                return
            case .message(let length):
                guard length > 0 else {
                    tearDown(error: EvplError(.framing, operation: "segment", context: "\(remoteAddress): message length \(length)"))
                    return
                }
                guard length <= receiveQueue.count else { return }
                deliver(length: length)
            case .failure(let reason):
                tearDown(error: EvplError(.framing, operation: "segment", context: "\(remoteAddress): \(reason)"))
                return
            }
        }
    }

    @inline(__always)
    private func deliver(length: Int) {
        if !handshakeEnded && timeouts.handshakeEndsWithFirstMessage { endHandshake() }
        delivering = true
        handler(self, .received(receiveQueue.view(length: length)))
        delivering = false
        if state == .closed {
            receiveQueue.releaseAll()
        } else {
            receiveQueue.consume(length)
            // Near the ceiling, a connection with nothing left to deliver keeps no buffer.
            if receiveQueue.count == 0 && loop.bufferPool.isUnderPressure { receiveQueue.releaseIdleFill() }
        }
    }

    /// The peer's end of stream arrived: reports ``ConnectionEvent/inputClosed``
    /// and, unless the application keeps the connection open, finishes it so
    /// that everything queued is still delivered.
    package func peerFinished() {
        guard isOpen, !inputClosed else { return }
        if !receivePauses.isEmpty {
            inputClosePending = true
            return
        }
        if let tls = security, !tls.closeNotifyReceived {
            // Everything decrypted before it was delivered (or waits for
            // the consumer); the missing close_notify makes the end an error.
            let moment = tls.isEstablished ? "without a close_notify" : "during the TLS handshake"
            tearDown(error: EvplError(.tlsTruncated, operation: "receive", context: "\(remoteAddress): the peer ended the stream \(moment)"))
            return
        }
        inputClosed = true
        if let pullConsumer {
            // The consumer drains what is queued, then sees the end; a
            // connection that had finished already is over (the queued
            // bytes stay for the consumer).
            pullConsumer()
            if state == .finishing { flush() }
            return
        }
        if segmenter != nil && receiveQueue.count > 0 {
            closingError = EvplError(.framing, operation: "receive", context: "\(remoteAddress): stream ended inside a message (\(receiveQueue.count) bytes left)")
        }
        handler(self, .inputClosed)
        guard isOpen else { return }
        if finishesWhenInputCloses || closingError != nil || state == .finishing {
            finish()
            // A connection that had finished already and sent its end of
            // stream is done now; otherwise the flush ends it.
            flush()
        }
    }
}
