import Evpl

/// Why an HTTP client request failed.
public struct HTTPClientError: Error, Sendable, CustomStringConvertible {
    /// What went wrong.
    public enum Kind: String, Sendable, Hashable {
        /// The request cannot be sent: no authority, a port that is not a
        /// number, a name that does not resolve.
        case invalidRequest
        /// The connection could not be made (refused, unreachable, TLS).
        case connect
        /// The response broke RFC 9112; ``HTTPClientError/parseError`` says how.
        case malformedResponse
        /// The connection ended before the response did.
        case closedEarly
        /// The response did not come, or stalled, within the configured time.
        case timedOut
        /// The response body is larger than the configured limit.
        case bodyTooLarge
        /// The waiting task was cancelled.
        case cancelled
    }

    /// What went wrong.
    public var kind: Kind
    /// Details for logs.
    public var detail: String
    /// The parse error, for ``Kind/malformedResponse``.
    public var parseError: HTTPParseError?
    /// The connection's error, when one caused this.
    public var underlying: EvplError?

    /// An error of `kind`.
    public init(_ kind: Kind, _ detail: String = "", parseError: HTTPParseError? = nil, underlying: EvplError? = nil) {
        self.kind = kind
        self.detail = detail
        self.parseError = parseError
        self.underlying = underlying
    }

    /// The kind, and the detail when there is one.
    public var description: String { detail.isEmpty ? kind.rawValue : "\(kind.rawValue): \(detail)" }
}
