import HTTPTypes

/// A response's head as the client read it: the response in
/// swift-http-types' terms, and what HTTP/1 adds to it.
public struct HTTPResponseHead: Sendable, Hashable {
    /// Status and fields.
    public var response: HTTPResponse
    /// The version the server sent.
    public var version: HTTPVersion
    /// Whether the connection may carry another request after this
    /// response: HTTP/1.1 unless the server sent `Connection: close`,
    /// HTTP/1.0 only with `Connection: keep-alive`, and never after a body
    /// that ends with the connection.
    public var keepAlive: Bool
    /// How the body is delimited (RFC 9112 section 6.3).
    public var bodyFraming: HTTPBodyFraming

    /// A head with the given parts.
    public init(response: HTTPResponse, version: HTTPVersion, keepAlive: Bool, bodyFraming: HTTPBodyFraming) {
        self.response = response
        self.version = version
        self.keepAlive = keepAlive
        self.bodyFraming = bodyFraming
    }
}
