extension AsyncConnection {
    /// The next message (or, without a segmenter, the bytes that have
    /// arrived), or `nil` once the peer has finished and everything before
    /// its end of stream was taken.
    ///
    /// The view is valid until the next receive on this connection, or
    /// until the connection is given up; keep bytes longer with
    /// ``ReceivedBytes/retainedIOVecs()`` or a copy. Taking the next
    /// message releases the previous one and may resume reading.
    ///
    /// - Throws: ``EvplError``: the error that ended the connection (after
    ///   the messages that arrived before it), `.framing` when the stream
    ///   ends inside a message or the segmenter rejects it, `.aborted` after
    ///   ``close()``, `.shutdown` when this side's graceful shutdown ended
    ///   the connection before the peer ended its stream (not the peer's
    ///   end), `.cancelled` or `.timedOut` when the wait is cut short (the
    ///   connection stays usable).
    nonisolated(nonsending) public func receive() async throws(EvplError) -> ReceivedBytes? {
        connection.checkThread()
        releaseHeld()
        while true {
            guard isConsuming, !inboundEnded else { return nil }
            if let failure, failure.code == .aborted {
                // Closed by this side: what was not taken is dropped.
                inboundEnded = true
                connection.receiveQueue.releaseAll()
                throw failure
            }
            if let length = try nextMessageLength() {
                heldLength = length
                return connection.receiveQueue.view(length: length)
            }
            if let failure {
                inboundEnded = true
                connection.receiveQueue.releaseAll()
                throw failure
            }
            if connection.inputClosed || connection.isClosed {
                inboundEnded = true
                let left = connection.receiveQueue.count
                connection.receiveQueue.releaseAll()
                if left > 0 {
                    throw EvplError(.framing, operation: "receive", context: "\(connection.remoteAddress): stream ended inside a message (\(left) bytes left)")
                }
                return nil
            }
            try await inboundWait.wait("receive")
        }
    }

    /// The received messages as an async sequence; see ``receive()`` for
    /// how long each view stays valid and what ends the sequence.
    public var inbound: Inbound { Inbound(connection: self) }

    /// Drops the message the consumer held, resuming reading once fewer
    /// than ``window`` bytes wait.
    private func releaseHeld() {
        guard heldLength > 0 else { return }
        let queue = connection.receiveQueue
        if queue.count >= heldLength { queue.consume(heldLength) }
        heldLength = 0
        connection.pullWindow = window
        if queue.count < window && connection.receivePauses.contains(.consumer) {
            connection.resumeReceiving(.consumer)
        }
    }

    /// The length of the next whole message in the queue, if one is there.
    private func nextMessageLength() throws(EvplError) -> Int? {
        let queue = connection.receiveQueue
        guard queue.count > 0 else { return nil }
        guard let segmenter else { return queue.count }
        let needed: Int
        switch segmenter(queue.view(length: queue.count)) {
        case .needMoreBytes:
            needed = queue.count + 1
        case .message(let length) where length > 0 && length <= queue.count:
            return length
        case .message(let length) where length > 0:
            needed = length
        case .message(let length):
            throw framingFailure("message length \(length)")
        case .failure(let reason):
            throw framingFailure(reason)
        }
        // A message larger than the window still has to arrive whole: the
        // window grows to it (the segmenter bounds how far) until it is taken.
        if needed > window { connection.pullWindow = needed }
        if connection.receivePauses.contains(.consumer) && queue.count < connection.pullWindow {
            connection.resumeReceiving(.consumer)
        }
        return nil
    }

    private func framingFailure(_ reason: String) -> EvplError {
        let error = EvplError(.framing, operation: "segment", context: "\(connection.remoteAddress): \(reason)")
        inboundEnded = true
        connection.receiveQueue.releaseAll()
        connection.tearDown(error: error)
        return error
    }

    /// The messages a connection receives, as an async sequence.
    public struct Inbound: AsyncSequence {
        /// What each iteration yields.
        public typealias Element = ReceivedBytes
        /// What iterating throws.
        public typealias Failure = EvplError

        let connection: AsyncConnection

        /// Starts iterating; one iteration at a time per connection.
        public func makeAsyncIterator() -> Iterator {
            Iterator(connection: connection)
        }

        /// Yields each message through ``AsyncConnection/receive()``.
        public struct Iterator: AsyncIteratorProtocol {
            let connection: AsyncConnection

            /// The next message, or `nil` at the end of the stream.
            public mutating func next(isolation actor: isolated (any Actor)?) async throws(EvplError) -> ReceivedBytes? {
                try await connection.receive()
            }

            /// The next message, or `nil` at the end of the stream.
            public mutating func next() async throws(EvplError) -> ReceivedBytes? {
                try await connection.receive()
            }
        }
    }
}
