import Logging

/// The connections a ``Listener`` hands to one loop, accepted with
/// async/await by a task on that loop.
///
/// Made with ``EventLoop/connections(from:segmenter:window:backlog:)``,
/// which attaches the loop to the listener. Each connection is in pull
/// mode from the moment it reaches the loop, so no byte arrives before its
/// consumer. Not `Sendable`: accept on the loop, and start each
/// connection's task there (see ``Listener/serve(on:segmenter:window:_:)``).
public final class IncomingConnections: AsyncSequence {
    /// What each iteration yields.
    public typealias Element = AsyncConnection
    /// What iterating throws.
    public typealias Failure = EvplError

    /// The listener the loop is attached to.
    public let listener: Listener
    private unowned let loop: EventLoop
    private let segmenter: Segmenter?
    private let window: Int
    private let backlog: Int
    private var pending: [AsyncConnection] = []
    private var pendingHead = 0
    private let wait: SuspendedTask
    private var stopped = false

    init(loop: EventLoop, listener: Listener, segmenter: Segmenter?, window: Int, backlog: Int) {
        self.loop = loop
        self.listener = listener
        self.segmenter = segmenter
        self.window = window
        self.backlog = Swift.max(1, backlog)
        wait = SuspendedTask(loop: loop)
        loop.attach(to: listener) { [unowned self] connection in arrived(connection) }
    }

    deinit {
        stop()
    }

    private func arrived(_ connection: Connection) {
        guard pending.count - pendingHead < backlog else {
            // Nobody accepts: refuse rather than hold connections without bound.
            loop.logger.debug("async accept backlog full; connection refused", metadata: ["peer": "\(connection.remoteAddress)", "backlog": "\(backlog)"])
            connection.close()
            return
        }
        pending.append(AsyncConnection(connection, segmenter: segmenter, window: window))
        wait.resume()
    }

    /// The next connection, or `nil` after ``stop()``.
    ///
    /// - Throws: ``EvplError`` `.cancelled` or `.timedOut` when the wait is
    ///   cut short (accepting can go on).
    nonisolated(nonsending) public func accept() async throws(EvplError) -> AsyncConnection? {
        loop.checkLoopThread()
        while true {
            if pendingHead < pending.count {
                let next = pending[pendingHead]
                pendingHead += 1
                if pendingHead == pending.count {
                    pending.removeAll(keepingCapacity: true)
                    pendingHead = 0
                }
                return next
            }
            if stopped { return nil }
            try await wait.wait("accept")
        }
    }

    /// Detaches the loop from the listener: connections not yet accepted
    /// are finished, and ``accept()`` returns `nil` from then on.
    public func stop() {
        guard !stopped else { return }
        stopped = true
        loop.detach(from: listener)
        pending.removeAll()
        pendingHead = 0
        wait.resume()
    }

    /// Iterates with ``accept()``.
    public func makeAsyncIterator() -> Iterator {
        Iterator(connections: self)
    }

    /// Yields each accepted connection.
    public struct Iterator: AsyncIteratorProtocol {
        let connections: IncomingConnections

        /// The next connection, or `nil` once stopped.
        public mutating func next(isolation actor: isolated (any Actor)?) async throws(EvplError) -> AsyncConnection? {
            try await connections.accept()
        }

        /// The next connection, or `nil` once stopped.
        public mutating func next() async throws(EvplError) -> AsyncConnection? {
            try await connections.accept()
        }
    }
}

extension EventLoop {
    /// Attaches this loop to `listener` and returns the connections it
    /// hands here, for a task on this loop to accept with `for try await`.
    ///
    /// - Parameters:
    ///   - listener: the listener to take connections from.
    ///   - segmenter: given to every connection.
    ///   - window: each connection's receive window.
    ///   - backlog: connections waiting to be accepted at most; more are
    ///     closed on arrival.
    public func connections(from listener: Listener, segmenter: Segmenter? = nil,
                            window: Int = AsyncConnection.defaultWindow, backlog: Int = 1024) -> IncomingConnections {
        checkLoopThread()
        return IncomingConnections(loop: self, listener: listener, segmenter: segmenter, window: window, backlog: backlog)
    }
}
