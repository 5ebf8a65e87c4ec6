import CEvplLinux
#if canImport(Glibc)
import Glibc
import Logging
#endif

/// One stream endpoint pair (TCP or Unix stream) on one event loop.
///
/// Everything about a connection happens on its loop's thread: its handler
/// sees exactly one ``ConnectionEvent/connected`` before any data and exactly
/// one ``ConnectionEvent/disconnected(_:)`` at the end, after which no event
/// follows. Sends are queued and written at the end of the loop iteration,
/// gathered into one `sendmsg`.
///
/// Nothing is lost at either end of the stream: when the peer finishes
/// sending, the handler sees ``ConnectionEvent/inputClosed`` and, by
/// default, the connection then finishes too, delivering every queued byte
/// before its own end of stream. Receiving pauses by itself while more than
/// ``EvplConfig/sendHighWatermark`` bytes wait to be sent (a peer that sends
/// without reading cannot make the connection buffer without bound), and on
/// request through ``pauseReceiving()``: the data then waits in the kernel
/// and the peer's TCP window closes.
public final class Connection: PollSource {
    /// The callback type every event of a connection goes through.
    public typealias Handler = (Connection, ConnectionEvent) -> Void

    enum State {
        case connecting
        case connected
        /// `finish()` was called: no new sends; close once the queue drains.
        case finishing
        case closed
    }

    /// The loop the connection lives on.
    public unowned let loop: EventLoop
    /// The protocol it was created with.
    public let evplProtocol: EvplProtocol
    /// The peer's address (for an outgoing connection, the address dialled).
    public let remoteAddress: SocketAddress
    /// Receives every event. Set it before the connection is handed back, or
    /// in a listener's attach callback.
    public var handler: Handler
    /// Splits the incoming stream into messages; `nil` delivers raw bytes.
    public var segmenter: Segmenter?
    /// Whether ``ConnectionEvent/sent(bytes:messages:)`` is reported.
    public var notifiesSent = false
    /// Arbitrary per-connection state for the application.
    public var context: AnyObject?
    /// Whether the connection finishes by itself once the peer has finished
    /// sending (after ``ConnectionEvent/inputClosed``): queued bytes are all
    /// delivered, then the end of stream, then `disconnected`. Turn it off
    /// to keep sending after the peer's half-close (replies still being
    /// computed), and call ``finish()`` when done.
    public var finishesWhenInputCloses = true
    /// How long the connection may take to finish its handshake and stay
    /// silent before it ends with `.timedOut` (see ``ConnectionTimeouts``).
    /// An accepted connection starts with its listener's; set it in the
    /// attach callback or at any time on the loop's thread.
    public var timeouts = ConnectionTimeouts.none {
        didSet { timeoutsChanged() }
    }

    let fd: Int32
    var state: State
    var token: UInt64 = 0
    var registrySlot = -1
    @exclusivity(unchecked) var sendQueue = SendQueue()
    package let receiveQueue: ReceiveQueue
    var flushQueued = false
    var readPending = false
    var disconnectQueued = false
    var finalError: EvplError?
    /// The end of stream went out: everything queued was written first.
    private(set) var shutdownSent = false
    /// `finish()` was called before the connect completed.
    var finishAfterConnect = false
    private var reportedSentBytes: UInt64 = 0
    /// The peer hung up: every later read pass must read through to the end of stream.
    var peerHungUp = false
    /// Why receiving is paused; empty while receiving.
    var receivePauses = ReceivePauses()
    /// The peer's end of stream has been read: nothing more will arrive.
    var inputClosed = false
    /// The end of stream arrived while receiving was paused; it is
    /// reported once the bytes before it have been delivered.
    var inputClosePending = false
    /// A `received` event is being handled: the view it carries must stay
    /// valid even if the handler closes the connection.
    var delivering = false
    /// An error to report with an otherwise orderly end (a stream that
    /// ended inside a message, or a TLS failure whose alert goes out first).
    var closingError: EvplError?
    /// The connection ends with ``closingError`` once its queue is out.
    var failing = false
    /// How the queues meet the kernel: the backend (see ``StreamTransport``).
    var transport = StreamTransport.socket
    /// Set while an async consumer pulls received bytes (``AsyncConnection``):
    /// arrivals and the end of stream only call it, and the bytes wait in
    /// ``receiveQueue`` until the consumer takes them. Receiving pauses
    /// once ``pullWindow`` bytes wait.
    var pullConsumer: (() -> Void)?
    var pullWindow = Int.max
    /// The security layer (TLS) when the protocol names one; `nil` for a
    /// plain stream.
    var security: (any StreamSecurity)?
    /// When the connection was accepted or started connecting, and when it
    /// last received or wrote a byte (the loop's clock of that iteration).
    let startedAt: UInt64
    @exclusivity(unchecked) var lastActivity: UInt64
    /// The handshake is over: the first message was delivered, or
    /// ``endHandshake()`` was called.
    var handshakeEnded = false
    /// When the message being read must have arrived whole
    /// (``setMessageDeadline(after:)``); 0 without one.
    @exclusivity(unchecked) var messageDeadline: UInt64 = 0
    /// The limit `messageDeadline` was set from, for the error that breaks it.
    @exclusivity(unchecked) var messageLimit = Duration.zero
    /// `messageLimit` in nanoseconds, kept: a protocol sets the same limit
    /// per message, and converting a `Duration` costs 128-bit arithmetic.
    @exclusivity(unchecked) var messageLimitNanoseconds: UInt64 = 0
    /// Where the loop's ``ConnectionDeadlines`` keeps the connection; -1 when not there.
    @exclusivity(unchecked) var deadlineSlot = -1
    @exclusivity(unchecked) var deadlineIndex = 0
    /// The tick of the wheel slot the connection sits in: the wheel looks
    /// at it then, and places it by its deadline of that moment.
    @exclusivity(unchecked) var deadlineTick: UInt64 = 0

    /// Where the backend puts the bytes it receives: the ciphertext queue
    /// under TLS, the receive queue itself otherwise.
    var wireReceiveQueue: ReceiveQueue { security?.ciphertext ?? receiveQueue }

    init(loop: EventLoop, fd: Int32, protocol evplProtocol: EvplProtocol, remoteAddress: SocketAddress, state: State, handler: @escaping Handler) {
        self.loop = loop
        self.fd = fd
        self.evplProtocol = evplProtocol
        self.remoteAddress = remoteAddress
        self.state = state
        self.handler = handler
        self.receiveQueue = ReceiveQueue(pool: loop.bufferPool)
        self.ownerThread = loop.ownerThread
        self.sendHighWatermark = loop.config.sendHighWatermark
        self.sendLowWatermark = loop.config.sendLowWatermark
        self.startedAt = MonotonicClock.nanoseconds()
        self.lastActivity = startedAt
    }

    /// The local address of the socket, when the kernel reports one.
    public var localAddress: SocketAddress? { state == .closed ? nil : transportLocalAddress }

    /// Bytes queued and not yet written to the kernel (under TLS, the
    /// records, plus what was sent before the handshake ended).
    public var queuedBytes: Int { sendQueue.count + (security?.pendingPlaintextCount ?? 0) }

    /// Whether the connection has delivered, or is about to deliver, its
    /// `disconnected` event.
    public var isClosed: Bool { state == .closed }

    /// Connected, and not yet closed (finishing still receives).
    package var isOpen: Bool { state == .connected || state == .finishing }

    // MARK: Sending

    /// Queues a copy of `bytes` as one message.
    ///
    /// - Throws: ``EvplError`` `.invalidState` after ``finish()`` or ``close()``,
    ///   or `.resourceExhausted` when the pool cannot hold the bytes (under
    ///   TLS, their records). Nothing is queued on error; under TLS, a
    ///   send OpenSSL then fails to encrypt also ends the connection with
    ///   that error.
    public func send(copying bytes: UnsafeRawBufferPointer) throws(EvplError) {
        try checkSendable()
        if let tls = security {
            try reclaimingIdleBuffers { () throws(EvplError) in try tls.checkRoom(for: bytes.count) }
            try encrypt(bytes, with: tls)
            return
        }
        try reclaimingIdleBuffers { () throws(EvplError) in
            try sendQueue.append(copying: bytes, pool: loop.bufferPool, trackMessage: notifiesSent)
        }
        queued()
    }

    /// Runs `attempt`; when the pool is out of room, takes back the fill
    /// buffers idle connections keep (see ``EventLoop/reclaimIdleBuffers()``)
    /// and tries once more.
    private func reclaimingIdleBuffers(_ attempt: () throws(EvplError) -> Void) throws(EvplError) {
        do throws(EvplError) {
            try attempt()
        } catch {
            guard error.code == .resourceExhausted, loop.reclaimIdleBuffers() else { throw error }
            try attempt()
        }
    }

    /// Queues a copy of `bytes` as one message.
    public func send(_ bytes: [UInt8]) throws(EvplError) {
        let result = bytes.withUnsafeBytes { raw in
            Result { () throws(EvplError) in try send(copying: raw) }
        }
        try result.get()
    }

    /// Queues pooled memory without copying, taking over the caller's reference
    /// to each IOVec (the buffers are released once written). All of them
    /// form one message.
    public func send(taking iovecs: [IOVec]) throws(EvplError) {
        do throws(EvplError) {
            try checkSendable()
        } catch {
            for iovec in iovecs { iovec.release() }
            throw error
        }
        if let tls = security {
            defer { for iovec in iovecs { iovec.release() } }
            try tls.checkRoom(for: iovecs.reduce(0) { $0 + $1.length })
            for iovec in iovecs { try encrypt(UnsafeRawBufferPointer(iovec.bytes), with: tls, endsMessage: false) }
            if notifiesSent { sendQueue.endMessage() }
            return
        }
        for index in iovecs.indices {
            sendQueue.append(taking: iovecs[index], trackMessage: false)
        }
        if notifiesSent { sendQueue.endMessage() }
        queued()
    }

    /// Queues one IOVec of pooled memory as one message without copying,
    /// taking over the caller's reference (released once written). To keep
    /// using the buffer, ``IOVec/retain()`` it first.
    public func send(taking iovec: IOVec) throws(EvplError) {
        do throws(EvplError) {
            try checkSendable()
        } catch {
            iovec.release()
            throw error
        }
        if let tls = security {
            defer { iovec.release() }
            try tls.checkRoom(for: iovec.length)
            try encrypt(UnsafeRawBufferPointer(iovec.bytes), with: tls)
            return
        }
        sendQueue.append(taking: iovec, trackMessage: notifiesSent)
        queued()
    }

    /// Encrypts a send into the send queue (the caller checked the pool
    /// has room). A failure leaves the TLS stream unusable, so the
    /// connection ends with it.
    private func encrypt(_ bytes: UnsafeRawBufferPointer, with tls: any StreamSecurity, endsMessage: Bool = true) throws(EvplError) {
        do throws(EvplError) {
            try tls.send(bytes)
            // Bytes from the handshake still wait: room may have come back
            // without a write of this connection's to notice it.
            if tls.pendingPlaintextCount > 0 { try tls.sendPending() }
        } catch {
            tearDown(error: error)
            throw error
        }
        if notifiesSent && endsMessage { sendQueue.endMessage() }
        queued()
    }

    /// Flushes everything queued, then closes the connection. Queued bytes are
    /// all delivered before the peer sees the end of the stream.
    public func finish() {
        checkThread()
        switch state {
        case .connecting:
            finishAfterConnect = true
        case .connected:
            if let tls = security {
                guard tls.isEstablished && tls.pendingPlaintextCount == 0 else {
                    // Finishes once the handshake is done and what was sent
                    // during it is encrypted (``encryptPending(_:)``).
                    finishAfterConnect = true
                    return
                }
                tls.sendCloseNotify()
            }
            state = .finishing
            scheduleFlush()
        case .finishing, .closed:
            return
        }
    }

    /// Closes at once, discarding queued bytes (the peer sees a reset).
    /// `disconnected` follows at the end of this iteration, with an
    /// `.aborted` error that tells it from an orderly end. Closing twice is
    /// harmless.
    public func close() {
        checkThread()
        guard state != .closed else { return }
        if fd >= 0 { SocketOps.setAbortiveClose(fd) }
        tearDown(error: EvplError(.aborted, operation: "close", context: "\(remoteAddress)"))
    }

    /// The owning loop's thread, copied here so the check touches nothing else.
    private let ownerThread: pthread_t
    /// The loop's send watermarks, copied so that a send reads no other object.
    private let sendHighWatermark: Int
    private let sendLowWatermark: Int

    /// Traps off the loop's thread, in release builds too (see ``EventLoop``).
    @inline(__always)
    func checkThread() {
        if _slowPath(pthread_self() != ownerThread) {
            threadConfinementViolated("Connection used off its loop's thread: run async code on it with Task(executorPreference: loop.executor), and reach it from other threads with loop.remote.execute")
        }
    }

    private func checkSendable() throws(EvplError) {
        checkThread()
        guard (state == .connected || state == .connecting) && !finishAfterConnect else {
            throw EvplError(.invalidState, operation: "send", context: "\(remoteAddress) (connection finishing or closed)")
        }
    }

    /// After a send: flush at the end of the iteration, and stop taking in
    /// more while too much waits to go out.
    @inline(__always)
    private func queued() {
        if sendQueue.count > sendHighWatermark && !receivePauses.contains(.backpressure) {
            pauseReceiving(.backpressure)
        }
        scheduleFlush()
    }

    package func scheduleFlush() {
        guard !flushQueued else { return }
        flushQueued = true
        loop.pendingFlush.append(self)
    }

    /// Writes queued bytes; called by the loop at the end of an iteration and
    /// when the socket becomes writable.
    func flush() {
        guard state == .connected || state == .finishing else { return }
        transmit()
        shutdownIfFinished()
    }

    /// Records `count` bytes an asynchronous send wrote.
    func wrote(_ count: Int) {
        noteActivity()
        let before = sendQueue.count
        sendQueue.markWritten(count)
        reportProgress(queuedBefore: before)
        guard state != .closed else { return }
        shutdownIfFinished()
    }

    /// Sends the end of stream once a finishing connection has written
    /// everything; closes once both directions have ended.
    private func shutdownIfFinished() {
        guard state == .finishing && sendQueue.isEmpty && !sendInFlight else { return }
        if !shutdownSent {
            shutdownSent = true
            sendEndOfStream()
            // The end of stream is a write: a shutdown's linger counts from it.
            noteActivity()
        }
        if inputClosed { tearDown(error: closingError) }
    }

    /// After bytes were written: `sent` and `writable` events, and the
    /// end of a backpressure pause.
    func reportProgress(queuedBefore: Int) {
        if let tls = security, tls.pendingPlaintextCount > 0 { encryptPending(tls) }
        // Near the ceiling, a connection with nothing left to send keeps no buffer.
        if sendQueue.isEmpty && loop.bufferPool.isUnderPressure { sendQueue.releaseIdleFill() }
        if notifiesSent {
            let bytes = Int(sendQueue.totalSent &- reportedSentBytes)
            reportedSentBytes = sendQueue.totalSent
            let messages = sendQueue.takeCompletedMessages()
            handler(self, .sent(bytes: bytes, messages: messages))
        }
        if sendQueue.count < sendLowWatermark && state != .closed {
            if queuedBefore >= sendLowWatermark { handler(self, .writable) }
            if receivePauses.contains(.backpressure) { resumeReceiving(.backpressure) }
        }
    }

    // MARK: Teardown

    /// Ends the connection with `error` once what is queued has gone out
    /// (a TLS alert that names the failure), without waiting for the peer:
    /// nothing more is read, and past ``alertFlushLimit`` it closes
    /// anyway. With nothing queued it closes at once.
    package func failAfterFlushing(_ error: EvplError) {
        guard isOpen, !failing else { return }
        guard !sendQueue.isEmpty else {
            tearDown(error: error)
            return
        }
        failing = true
        closingError = error
        state = .finishing
        inputClosed = true
        stopReceiving()
        scheduleFlush()
        _ = try? loop.addOneShotTimer(after: Self.alertFlushLimit) { [weak self] _ in self?.tearDown(error: error) }
    }

    /// Gives back the buffers the connection keeps only for its next read
    /// or send (its queues are empty): at the pool's ceiling, an idle
    /// connection should hold nothing.
    func releaseIdleBuffers() {
        guard !delivering, pullConsumer == nil || receiveQueue.count == 0 else { return }
        receiveQueue.releaseIdleFill()
        security?.ciphertext.releaseIdleFill()
        sendQueue.releaseIdleFill()
    }

    /// How long a failing connection may take to send its last alert.
    static let alertFlushLimit = Duration.seconds(1)

    /// Closes the socket, releases every buffer and queues the one
    /// `disconnected` event for the end of the iteration.
    package func tearDown(error: EvplError?) {
        guard state != .closed else { return }
        state = .closed
        finalError = error
        if let error, error.code != .aborted {
            loop.logger.debug("connection ended", metadata: ["peer": "\(remoteAddress)", "error": "\(error)"])
        }
        closeTransport()
        if deadlineSlot >= 0 { loop.deadlines.remove(self) }
        sendQueue.releaseAll()
        security?.ciphertext.releaseAll()
        // A handler closing from inside `received` still reads its view;
        // the delivery releases the queue when the handler returns. An
        // async consumer still takes what arrived before the end.
        if !delivering && pullConsumer == nil { receiveQueue.releaseAll() }
        if !disconnectQueued {
            disconnectQueued = true
            loop.pendingDisconnects.append(self)
        }
    }

    /// Closes the socket and drops its buffers without touching the loop;
    /// for a loop that is being destroyed.
    func abandon() {
        guard state != .closed else { return }
        state = .closed
        // The deadline wheel goes with the loop; the loop, being destroyed, cannot be reached.
        deadlineSlot = -1
        abandonTransport()
        sendQueue.releaseAll()
        receiveQueue.releaseAll()
        security?.ciphertext.releaseAll()
        handler = { _, _ in }
        // What the application hung on the connection may hold it in turn (a protocol layer does).
        context = nil
    }

    func completeDisconnect() {
        let handler = self.handler
        self.handler = { _, _ in }
        segmenter = nil
        loop.connections.remove(self)
        handler(self, .disconnected(finalError))
    }
}
