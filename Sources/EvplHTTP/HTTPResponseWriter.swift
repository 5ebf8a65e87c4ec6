import Evpl
import HTTPTypes

/// How an async handler answers its request: a whole response, or a head
/// and a body written with backpressure.
///
/// ``write(_:)`` suspends while the connection's send queue is above the
/// loop's send high watermark, until it drains below the low one, so a
/// handler streaming a large body to a slow client holds at most about
/// the high watermark in memory. Use it on the loop's thread, from the
/// handler's task.
public final class HTTPResponseWriter {
    private unowned let exchange: HTTPServerConnection
    private let waiter: SuspendedTask
    private var closedError: EvplError?
    /// Whether a response head went out.
    public private(set) var headWritten = false
    /// Whether the response ended.
    public private(set) var ended = false

    init(exchange: HTTPServerConnection) {
        self.exchange = exchange
        waiter = SuspendedTask(loop: exchange.connection.loop)
    }

    /// Sends `response` with `body` as one message.
    ///
    /// - Throws: `EvplError` as ``HTTPServerConnection/respond(_:body:)-(_,UnsafeRawBufferPointer)`` does.
    public func respond(_ response: HTTPResponse, body: [UInt8] = []) throws(EvplError) {
        let result = body.withUnsafeBytes { raw in Result { () throws(EvplError) in try exchange.respond(response, body: raw) } }
        try result.get()
        headWritten = true
        ended = true
    }

    /// Starts a streamed response (see ``HTTPServerConnection/writeHead(_:)``).
    public func writeHead(_ response: HTTPResponse) throws(EvplError) {
        try exchange.writeHead(response)
        headWritten = true
    }

    /// Sends `bytes` as the next piece of the body, then waits while too
    /// much waits to be sent.
    ///
    /// - Throws: `EvplError` as ``HTTPServerConnection/writeBody(copying:)``
    ///   does, or the connection's end while waiting.
    nonisolated(nonsending) public func write(_ bytes: [UInt8]) async throws(EvplError) {
        try exchange.writeBody(bytes)
        try await waitWhileBehind()
    }

    /// Sends pooled memory as the next piece of the body without copying it
    /// (see ``HTTPServerConnection/writeBody(taking:)``), then waits while
    /// too much waits to be sent.
    ///
    /// - Throws: `EvplError` as ``HTTPServerConnection/writeBody(taking:)``
    ///   does, or the connection's end while waiting.
    nonisolated(nonsending) public func write(taking iovecs: [IOVec]) async throws(EvplError) {
        try exchange.writeBody(taking: iovecs)
        try await waitWhileBehind()
    }

    /// The loop the response is written on.
    public var loop: EventLoop { exchange.connection.loop }

    /// Waits while the send queue holds `limit` bytes or more (the high
    /// watermark by default); the connection's `writable` event, below the
    /// low watermark, wakes it.
    nonisolated(nonsending) func waitWhileBehind(limit: Int? = nil) async throws(EvplError) {
        let connection = exchange.connection
        let limit = limit ?? connection.loop.config.sendHighWatermark
        while connection.queuedBytes >= limit {
            if let closedError { throw closedError }
            exchange.onWritable = { [waiter] in waiter.resume() }
            defer { exchange.onWritable = nil }
            try await waiter.wait("HTTP response body")
        }
        if let closedError { throw closedError }
    }

    /// Ends a streamed response (see ``HTTPServerConnection/end(trailers:)``).
    public func end(trailers: HTTPFields? = nil) throws(EvplError) {
        try exchange.end(trailers: trailers)
        ended = true
    }

    func connectionEnded(_ error: EvplError?) {
        closedError = error ?? EvplError(.invalidState, operation: "write", context: "the connection ended")
        waiter.resume()
    }
}
