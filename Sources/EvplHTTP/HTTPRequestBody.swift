import Evpl

/// A request's body as an async sequence of byte arrays, for async
/// handlers (`EventLoop.serveHTTP(from:configuration:respond:)`).
///
/// Bytes are copied out of the receive buffers as they arrive. Once
/// ``window`` bytes wait unread, the connection stops reading, so a client
/// that uploads faster than the handler consumes holds at most that much
/// memory here (and its own kernel buffers); the body timeout does not run
/// meanwhile, as the wait is the handler's. Iterate it on the loop's
/// thread, from the handler's task.
public final class HTTPRequestBody: AsyncSequence {
    /// What each iteration yields: the next bytes, as they arrived.
    public typealias Element = [UInt8]
    /// What iterating throws: the connection's end before the body's.
    public typealias Failure = EvplError

    /// Unread bytes past which the connection stops reading.
    public static let window = 256 << 10

    private unowned let exchange: HTTPServerConnection
    private var chunks: [[UInt8]] = []
    private var nextChunk = 0
    private var buffered = 0
    private var ended = false
    private var failure: EvplError?
    private var paused = false
    private let waiter: SuspendedTask

    init(exchange: HTTPServerConnection) {
        self.exchange = exchange
        waiter = SuspendedTask(loop: exchange.connection.loop)
    }

    func append(_ bytes: ReceivedBytes) {
        chunks.append(bytes.array)
        buffered += bytes.count
        if buffered >= Self.window && !paused {
            paused = true
            exchange.pauseBody()
        }
        waiter.resume()
    }

    func finish() {
        ended = true
        waiter.resume()
    }

    func fail(_ error: EvplError) {
        if !ended { failure = error }
        waiter.resume()
    }

    /// The next bytes of the body, or `nil` at its end.
    ///
    /// - Throws: `EvplError` when the connection ended before the body
    ///   did, `.cancelled` or `.timedOut` when the wait is cut short.
    nonisolated(nonsending) public func next() async throws(EvplError) -> [UInt8]? {
        while true {
            if nextChunk < chunks.count {
                let chunk = chunks[nextChunk]
                nextChunk += 1
                if nextChunk == chunks.count {
                    chunks.removeAll(keepingCapacity: true)
                    nextChunk = 0
                }
                buffered -= chunk.count
                if paused && buffered < Self.window / 2 {
                    paused = false
                    exchange.resumeBody()
                }
                return chunk
            }
            if let failure { throw failure }
            if ended { return nil }
            try await waiter.wait("HTTP request body")
        }
    }

    /// The whole body, at most `limit` bytes.
    ///
    /// - Throws: `EvplError` `.resourceExhausted` past `limit`, or what
    ///   ``next()`` throws.
    nonisolated(nonsending) public func collect(upTo limit: Int) async throws(EvplError) -> [UInt8] {
        var whole: [UInt8] = []
        while let chunk = try await next() {
            guard whole.count + chunk.count <= limit else {
                throw EvplError(.resourceExhausted, operation: "collect", context: "a body over \(limit) bytes")
            }
            whole += chunk
        }
        return whole
    }

    /// Starts iterating; one iteration at a time.
    public func makeAsyncIterator() -> Iterator {
        Iterator(body: self)
    }

    /// Yields each piece through ``HTTPRequestBody/next()``.
    public struct Iterator: AsyncIteratorProtocol {
        let body: HTTPRequestBody

        /// The next bytes, or `nil` at the end of the body.
        public mutating func next(isolation actor: isolated (any Actor)?) async throws(EvplError) -> [UInt8]? {
            try await body.next()
        }

        /// The next bytes, or `nil` at the end of the body.
        public mutating func next() async throws(EvplError) -> [UInt8]? {
            try await body.next()
        }
    }
}
