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
                connection.discardPulled()
                throw failure
            }
            if let length = try nextMessageLength() {
                heldLength = length
                return connection.pulledView(length: length)
            }
            if let failure {
                inboundEnded = true
                connection.discardPulled()
                throw failure
            }
            if connection.pullInputEnded {
                inboundEnded = true
                let left = connection.pendingPullBytes
                connection.discardPulled()
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
        connection.takePulled(heldLength, window: window)
        heldLength = 0
    }

    /// The length of the next whole message in the queue, if one is there.
    private func nextMessageLength() throws(EvplError) -> Int? {
        let pending = connection.pendingPullBytes
        guard pending > 0 else { return nil }
        guard let segmenter else { return pending }
        let needed: Int
        switch segmenter(connection.pulledView(length: pending)) {
        case .needMoreBytes:
            needed = pending + 1
        case .message(let length) where length > 0 && length <= pending:
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
        connection.widenPullWindow(to: needed > window ? needed : window)
        return nil
    }

    private func framingFailure(_ reason: String) -> EvplError {
        let error = EvplError(.framing, operation: "segment", context: "\(connection.remoteAddress): \(reason)")
        inboundEnded = true
        connection.failPulling(error)
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
