import HTTPTypes

/// Why a request could not be read, and the status RFC 9112 and RFC 9110
/// name for the answer.
///
/// The server answers a parse error with ``status`` and `Connection: close`,
/// then closes the connection: after a framing error nothing that follows
/// on the stream can be trusted to start a request.
public struct HTTPParseError: Error, Sendable, Hashable, CustomStringConvertible {
    /// What was wrong with the request.
    public enum Kind: String, Sendable, Hashable, CaseIterable {
        /// The request line is not `method SP request-target SP HTTP-version`.
        case invalidRequestLine
        /// The method is not a token.
        case invalidMethod
        /// The request target has a byte outside the URI grammar, or a form
        /// the method does not allow.
        case invalidTarget
        /// The request line is longer than the limit (414).
        case requestLineTooLong
        /// The version is not `HTTP/DIGIT.DIGIT`.
        case invalidVersion
        /// The major version is not 1 (505).
        case unsupportedVersion
        /// A field line is malformed: no colon, whitespace before the colon,
        /// a name that is not a token, or a forbidden byte in the value.
        case invalidField
        /// A field line starts with whitespace (obs-fold, RFC 9112 section 5.2).
        case obsoleteLineFolding
        /// A CR not followed by LF, or an LF not preceded by CR.
        case bareLineBreak
        /// The field section is larger than the limit (431).
        case fieldSectionTooLarge
        /// More field lines than the limit (431).
        case tooManyFields
        /// An HTTP/1.1 request without a `Host` field, with more than one,
        /// or with an invalid value (RFC 9112 section 3.2).
        case invalidHost
        /// `Content-Length` is not a single decimal number, or is repeated.
        case invalidContentLength
        /// Both `Content-Length` and `Transfer-Encoding` are present.
        case conflictingFraming
        /// `Transfer-Encoding` does not end with `chunked`, names it twice,
        /// or appears in an HTTP/1.0 request.
        case invalidTransferEncoding
        /// A transfer coding other than `chunked` (501).
        case unsupportedTransferCoding
        /// The body is larger than the limit (413).
        case bodyTooLarge
        /// A chunk size line that is not `1*HEXDIG [chunk-ext] CRLF`, a
        /// chunk not followed by CRLF, or a chunk size too large to hold.
        case invalidChunk
        /// An `Expect` field with an expectation other than `100-continue` (417).
        case unsupportedExpectation
        /// A method the server does not implement at the framing level
        /// (`CONNECT`: no tunnels) (501).
        case unsupportedMethod
    }

    /// What was wrong.
    public var kind: Kind
    /// Where it was found, for logs.
    public var detail: String

    /// An error of `kind`.
    public init(_ kind: Kind, _ detail: String = "") {
        self.kind = kind
        self.detail = detail
    }

    /// The status the server answers with.
    public var status: HTTPResponse.Status {
        switch kind {
        case .requestLineTooLong: return .uriTooLong
        case .unsupportedVersion: return .httpVersionNotSupported
        case .fieldSectionTooLarge, .tooManyFields: return .requestHeaderFieldsTooLarge
        case .bodyTooLarge: return .contentTooLarge
        case .unsupportedTransferCoding, .unsupportedMethod: return .notImplemented
        case .unsupportedExpectation: return .expectationFailed
        default: return .badRequest
        }
    }

    /// The kind, and the detail when there is one.
    public var description: String { detail.isEmpty ? kind.rawValue : "\(kind.rawValue): \(detail)" }
}
