/// The protocol version of an HTTP/1 message: `HTTP/1.0` or `HTTP/1.1`.
///
/// swift-http-types leaves the version out of `HTTPRequest`, because HTTP/2
/// and HTTP/3 carry none; on HTTP/1 it decides persistence and which
/// framings the peer understands, so the parsed head keeps it.
public struct HTTPVersion: Sendable, Hashable, CustomStringConvertible {
    /// The major version: 1 for every message this library accepts.
    public var major: Int
    /// The minor version: 0 or 1. A request that names a higher minor
    /// version (`HTTP/1.2`) is treated as 1.1, as RFC 9110 section 2.5 asks.
    public var minor: Int

    /// A version from its two numbers.
    public init(major: Int, minor: Int) {
        self.major = major
        self.minor = minor
    }

    /// `HTTP/1.0`: connections close after each response unless the client
    /// asks for keep-alive, and chunked coding is unknown.
    public static let http1_0 = HTTPVersion(major: 1, minor: 0)
    /// `HTTP/1.1`: persistent connections and chunked coding.
    public static let http1_1 = HTTPVersion(major: 1, minor: 1)

    /// The version as it appears on the wire: `HTTP/1.1`.
    public var description: String { "HTTP/\(major).\(minor)" }
}
