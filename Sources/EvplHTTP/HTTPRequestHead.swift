import HTTPTypes

/// How a message's body is delimited on the wire (RFC 9112 section 6).
public enum HTTPBodyFraming: Sendable, Hashable {
    /// No body: a request with no `Content-Length` or `Transfer-Encoding`;
    /// a response to HEAD, or with status 1xx, 204 or 304.
    case none
    /// Exactly this many bytes (`Content-Length`).
    case length(Int)
    /// The chunked transfer coding, ended by a zero-size chunk and trailers.
    case chunked
    /// The rest of the stream: a response with neither `Content-Length` nor
    /// chunked coding ends when the server closes the connection.
    case untilClose
}

/// A request's head as the server read it: the request in swift-http-types'
/// terms, and what HTTP/1 adds to it.
///
/// `request.authority` holds the `Host` field's value (or the authority of
/// an absolute-form target), and `Host` itself is not repeated in
/// `request.headerFields`, as swift-nio's HTTP types conversion does.
/// `request.path` is the request target as sent.
public struct HTTPRequestHead: Sendable, Hashable {
    /// Method, target, authority and fields.
    public var request: HTTPRequest
    /// The version the client sent.
    public var version: HTTPVersion
    /// Whether the client lets the connection stay open after the response:
    /// HTTP/1.1 unless it sent `Connection: close`, HTTP/1.0 only with
    /// `Connection: keep-alive`.
    public var keepAlive: Bool
    /// Whether the client waits for `100 Continue` before it sends the body
    /// (`Expect: 100-continue`).
    public var expectsContinue: Bool
    /// How the body is delimited.
    public var bodyFraming: HTTPBodyFraming

    /// A head with the given parts.
    public init(request: HTTPRequest, version: HTTPVersion, keepAlive: Bool, expectsContinue: Bool = false, bodyFraming: HTTPBodyFraming = .none) {
        self.request = request
        self.version = version
        self.keepAlive = keepAlive
        self.expectsContinue = expectsContinue
        self.bodyFraming = bodyFraming
    }
}
