import Evpl
import HTTPTypes

/// What an HTTP server connection reports to its handler, request by
/// request: a head, its body in pieces, its end; and the connection's end.
public enum HTTPServerEvent {
    /// A request's head. Respond with ``HTTPServerConnection/respond(_:body:)-(_,UnsafeRawBufferPointer)``
    /// or start a streamed response with ``HTTPServerConnection/writeHead(_:)``,
    /// now or after its body.
    case head(HTTPRequestHead)
    /// Bytes of the body, as received: a view of the receive buffers, valid
    /// only during the callback (copy them, or keep them with
    /// `ReceivedBytes.retainedIOVecs()`).
    case body(ReceivedBytes)
    /// The request is complete, with its trailer fields if a chunked body
    /// had any. The next request's head comes only once the response to
    /// this one has ended, so responses go out in request order.
    case end(trailers: HTTPFields?)
    /// The send queue fell below the loop's low watermark: a handler
    /// streaming a large body (``HTTPServerConnection/writeBody(taking:)``)
    /// writes its next piece.
    case writable
    /// The connection is over: `nil` after an orderly end. Nothing follows;
    /// a response still being written goes nowhere.
    case closed(EvplError?)
}

/// Handles the events of one HTTP server connection, on its loop.
public typealias HTTPServerHandler = (HTTPServerConnection, HTTPServerEvent) -> Void
