/// A stream connection driven with async/await by a task on its loop.
///
/// Received bytes arrive through ``inbound`` (or ``receive()``): each is a
/// whole message when the connection has a segmenter, otherwise the bytes
/// that have arrived, viewed in place in pool buffers, valid until the next
/// receive. The consumer drives backpressure: while it has ``window`` bytes
/// it has not taken, the connection stops reading the socket, the peer's
/// window closes and it stops sending. ``write(_:)-([UInt8])`` and its siblings queue
/// bytes and suspend while more than ``EvplConfig/sendHighWatermark`` waits
/// to go out.
///
/// The peer's end of stream ends ``inbound`` after every byte before it
/// (a stream that ends inside a message throws `.framing`); the connection
/// stays open for writing until ``finish()``. An error (a reset, a failed
/// send) is thrown by the next receive or write, after the messages that
/// arrived before it.
///
/// `AsyncConnection` is not `Sendable`: use it from the task that made or
/// accepted it, on its loop. ``handle`` gives other tasks a `Sendable` way
/// to write to it. Dropping it finishes the connection (queued bytes still
/// go out); ``executeThenClose(_:)`` scopes that explicitly.
public final class AsyncConnection {
    /// The connection underneath: addresses, statistics, and the callback
    /// API for what this type does not cover.
    public let connection: Connection
    /// Unconsumed bytes at which receiving pauses until the consumer
    /// catches up.
    public let window: Int
    let segmenter: Segmenter?
    let inboundWait: SuspendedTask
    /// Writers waiting for room (the owner and ``handle`` users), and
    /// spare waits to reuse so that waiting allocates nothing.
    var writersWaiting: [SuspendedTask] = []
    var spareWriterWaits: [SuspendedTask] = []
    /// Bytes of the message the consumer holds a view of.
    var heldLength = 0
    /// Whether the consumer still pulls the connection's bytes.
    var isConsuming = true
    /// Whether the inbound side has ended for the consumer.
    var inboundEnded = false
    private(set) var isConnected = false
    private(set) var isDisconnected = false

    /// The window when none is given: four default pool buffers.
    public static let defaultWindow = 256 * 1024

    /// Takes over `connection`'s events: its handler and segmenter now
    /// belong to this object.
    init(_ connection: Connection, segmenter: Segmenter?, window: Int) {
        self.connection = connection
        self.segmenter = segmenter
        self.window = max(1, window)
        inboundWait = SuspendedTask(loop: connection.loop)
        isConnected = connection.isOpen
        connection.startPulling(window: self.window) { [unowned self] in inboundWait.resume() }
        connection.handler = { [unowned self] _, event in handle(event) }
    }

    deinit {
        stopConsuming()
        if connection.isOpen { connection.finish() }
    }

    /// The executor of the connection's loop.
    public var executor: EventLoopExecutor { connection.loop.executor }

    private func handle(_ event: ConnectionEvent) {
        switch event {
        case .connected:
            isConnected = true
            inboundWait.resume()
        case .writable:
            resumeWriters()
        case .disconnected:
            isDisconnected = true
            inboundWait.resume()
            resumeWriters()
        case .received, .sent, .inputClosed:
            // Pulled bytes and the end of stream arrive through
            // `pullConsumer`; `sent` is not asked for.
            break
        }
    }

    /// Lets every writer waiting for room look again.
    func resumeWriters() {
        for index in writersWaiting.indices { writersWaiting[index].resume() }
    }

    // MARK: Ending

    /// Sends everything queued, then the end of stream; receiving goes on
    /// until the peer ends too.
    public func finish() {
        connection.finish()
    }

    /// Closes at once, discarding queued bytes; the peer sees a reset. A
    /// task suspended in a receive or write gets `.aborted`.
    public func close() {
        connection.close()
        inboundWait.resume()
        resumeWriters()
    }

    /// Runs `body` with this connection and ends it when `body` ends: when
    /// it returns, the connection finishes (queued bytes go out, then the
    /// end of stream) and what still arrives is discarded; when it throws,
    /// the connection is closed at once and the error rethrown.
    nonisolated(nonsending) public func executeThenClose<Result>(
        _ body: nonisolated(nonsending) (AsyncConnection) async throws -> Result
    ) async throws -> Result {
        let result: Result
        do {
            result = try await body(self)
        } catch {
            close()
            stopConsuming()
            throw error
        }
        finish()
        stopConsuming()
        return result
    }

    /// Gives the connection back to the loop: bytes not taken are
    /// released, later ones are discarded, and the connection ends when
    /// the peer finishes too.
    func stopConsuming() {
        guard isConsuming else { return }
        isConsuming = false
        heldLength = 0
        connection.handler = { _, _ in }
        connection.stopPulling()
    }

    /// The error a receive or write reports once the connection has ended
    /// abnormally, if it has.
    var failure: EvplError? { connection.endError }
}
