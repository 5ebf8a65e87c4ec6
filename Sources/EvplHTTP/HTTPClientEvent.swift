import Evpl
import HTTPTypes

/// What an ``HTTPClient`` reports about one request: the response's head,
/// its body in pieces, its end; or the failure that ends it instead.
/// Exactly one of `end` and `failed` comes last.
public enum HTTPClientEvent {
    /// The final response's head (1xx interim responses are skipped).
    case head(HTTPResponseHead)
    /// Bytes of the body, as received: a view of the receive buffers, valid
    /// only during the callback.
    case body(ReceivedBytes)
    /// The response is complete, with its trailer fields if a chunked body
    /// had any.
    case end(trailers: HTTPFields?)
    /// The request failed; nothing follows.
    case failed(HTTPClientError)
}

/// Handles the events of one client request, on the client's loop.
public typealias HTTPClientHandler = (HTTPClientEvent) -> Void

/// A whole response, as ``HTTPClient/execute(_:body:)`` collects it.
public struct HTTPClientResponse: Sendable {
    /// Status, fields, version and framing.
    public var head: HTTPResponseHead
    /// The body, whole.
    public var body: [UInt8]
    /// The trailer fields of a chunked body, if it had any.
    public var trailers: HTTPFields?
}
