import Logging

/// What a graceful shutdown achieved.
public struct ShutdownReport: Sendable, Hashable, CustomStringConvertible {
    /// Connections that finished in time: every queued byte delivered, then
    /// the end of stream.
    public var finished = 0
    /// Connections still open at the deadline, closed abortively (their
    /// handlers see `disconnected` with an `.aborted` error).
    public var aborted = 0
    /// Block requests still pending at the deadline.
    public var blockRequestsPending = 0

    /// Creates an empty report.
    public init() {}

    /// Whether everything ended in time.
    public var isClean: Bool { aborted == 0 && blockRequestsPending == 0 }

    /// Adds another loop's report to this one.
    public mutating func merge(_ other: ShutdownReport) {
        finished += other.finished
        aborted += other.aborted
        blockRequestsPending += other.blockRequestsPending
    }

    /// One line: what finished, what was aborted, what was still pending.
    public var description: String {
        "\(finished) connections finished, \(aborted) aborted at the deadline, \(blockRequestsPending) block requests pending"
    }
}

/// The state of a loop's graceful shutdown.
final class GracefulShutdown {
    enum Phase {
        /// Connections do not receive; block requests in flight complete,
        /// and the answers they produce are still sent.
        case draining
        /// Every connection finishes.
        case finishing
    }

    var phase = Phase.draining
    let deadline: UInt64
    /// How long a connection whose end of stream went out may stay silent
    /// before it is closed without the peer's end; `nil` waits until the
    /// deadline.
    let linger: UInt64?
    let completion: (ShutdownReport) -> Void
    var report = ShutdownReport()
    var deadlineTimer: EvplTimer?
    /// Wakes the loop to look for connections past their linger.
    var lingerTimer: EvplTimer?

    init(deadline: UInt64, linger: UInt64?, completion: @escaping (ShutdownReport) -> Void) {
        self.deadline = deadline
        self.linger = linger
        self.completion = completion
    }
}

extension EventLoop {
    /// Shuts the loop down gracefully: it detaches from every listener (no
    /// new connection arrives) and stops receiving; block requests in
    /// flight complete (what their handlers send still goes out); then
    /// every connection finishes (queued bytes are delivered, then the end
    /// of stream, then the peer's own end). When nothing is left, or at
    /// `timeout` at the latest, what remains is closed abortively,
    /// `completion` runs with the report, and the loop stops.
    ///
    /// The abortive path stays: ``closeAll()`` closes at once.
    public func shutdownGracefully(timeout: Duration, _ completion: @escaping (ShutdownReport) -> Void = { _ in }) {
        shutdownGracefully(timeout: timeout, linger: nil, completion)
    }

    /// ``shutdownGracefully(timeout:_:)`` that waits at most `linger` for
    /// the peer's end of stream once a connection's own went out: a
    /// keep-alive client that sits idle, and would hold the shutdown until
    /// `timeout`, is closed after `linger` of silence. Such a connection
    /// lost nothing (every queued byte was delivered); it ends with
    /// `.shutdown` and counts as finished. `nil` waits until `timeout`.
    public func shutdownGracefully(timeout: Duration, linger: Duration?, _ completion: @escaping (ShutdownReport) -> Void = { _ in }) {
        checkLoopThread()
        guard gracefulShutdown == nil else { return }
        let nanoseconds = Self.clampedNanoseconds(timeout)
        let lingerNanoseconds = linger.map(Self.clampedNanoseconds)
        let shutdown = GracefulShutdown(deadline: MonotonicClock.nanoseconds() &+ nanoseconds, linger: lingerNanoseconds, completion: completion)
        gracefulShutdown = shutdown
        detachFromAllListeners()
        for connection in connections.all() {
            if connection.state == .connecting {
                connection.close()
            } else {
                shutdown.report.finished += 1
                connection.pauseReceiving(.shutdown)
            }
        }
        // Wakes the loop at the deadline, however idle it is, and while a
        // linger runs, a few times per linger.
        shutdown.deadlineTimer = try? addOneShotTimer(after: .nanoseconds(nanoseconds)) { _ in }
        if let lingerNanoseconds {
            let period = min(max(lingerNanoseconds / 4, 1_000_000), 100_000_000)
            shutdown.lingerTimer = try? addTimer(every: .nanoseconds(period)) { _ in }
        }
        continueGracefulShutdown()
    }

    private static func clampedNanoseconds(_ duration: Duration) -> UInt64 {
        min(duration.wholeNanoseconds ?? (duration > .zero ? .max : 0), UInt64(Int64.max))
    }

    /// Closes the finishing connections whose end of stream went out and
    /// that stayed silent for the linger since: all was delivered.
    private func endLingeringConnections(_ shutdown: GracefulShutdown) {
        guard let linger = shutdown.linger, shutdown.phase == .finishing else { return }
        let now = MonotonicClock.nanoseconds()
        for connection in connections.all()
        where !connection.isClosed && connection.shutdownSent && !connection.inputClosed && now &- connection.lastActivity >= linger {
            connection.tearDown(error: EvplError(.shutdown, operation: "shutdown", context: "\(connection.remoteAddress): no end of stream within the linger"))
        }
    }

    /// Checked at the end of every iteration while a shutdown runs.
    func continueGracefulShutdown() {
        guard let shutdown = gracefulShutdown else { return }
        let pastDeadline = MonotonicClock.nanoseconds() >= shutdown.deadline
        if shutdown.phase == .draining && (blockRequestsPending == 0 || pastDeadline) {
            shutdown.phase = .finishing
            for connection in connections.all() {
                connection.finish()
                // Reading resumes so the peer's end of stream is seen.
                connection.resumeReceiving(.shutdown)
            }
        }
        endLingeringConnections(shutdown)
        let done = connections.count == 0 && blockRequestsPending == 0 && pendingDisconnects.isEmpty
        guard done || pastDeadline else { return }
        for connection in connections.all() where !connection.isClosed {
            if connection.shutdownSent {
                // Everything went out and the end of stream with it; only
                // the peer's own end is missing: nothing queued is lost,
                // but the input was cut, which is not the peer's end.
                connection.tearDown(error: connection.inputClosed ? nil
                    : EvplError(.shutdown, operation: "shutdown", context: "\(connection.remoteAddress)"))
            } else {
                shutdown.report.aborted += 1
                shutdown.report.finished -= 1
                connection.close()
            }
        }
        while deliverPendingDisconnects() {}
        shutdown.report.blockRequestsPending = blockRequestsPending
        shutdown.deadlineTimer?.cancel()
        shutdown.lingerTimer?.cancel()
        gracefulShutdown = nil
        logger.info("graceful shutdown done", metadata: ["report": "\(shutdown.report)"])
        shutdown.completion(shutdown.report)
        stop()
    }

    func detachFromAllListeners() {
        for attachment in attachments.values {
            attachment.listener.detach(loopID: ObjectIdentifier(self))
        }
        attachments.removeAll()
    }
}
