/// The fields that frame a message and decide whether its connection
/// persists (`Content-Length`, `Transfer-Encoding`, `Connection`), noted as
/// a head's field lines go by; the request and response parsers apply
/// their own rules to what was seen.
struct HTTPFramingFields {
    /// `Content-Length` fields seen.
    private(set) var contentLengthCount = 0
    /// The last `Content-Length` value; `Int.max` for one too long to hold.
    private(set) var contentLength: Int?
    /// Whether any `Transfer-Encoding` field was seen.
    private(set) var transferEncoding = false
    /// Whether the codings, over every `Transfer-Encoding` field, end with chunked.
    private(set) var chunkedLast = false
    /// Whether a coding (chunked again included) follows chunked.
    private(set) var codingAfterChunked = false
    /// The first coding other than chunked, if any.
    private(set) var otherCoding: String?
    /// Whether a coding is not a token.
    private(set) var malformedCoding = false
    /// `Connection: close`.
    private(set) var close = false
    /// `Connection: keep-alive`.
    private(set) var keepAlive = false

    /// Notes `name: value` when it is one of these fields.
    mutating func observe(name: UnsafeRawBufferPointer, value: UnsafeRawBufferPointer) throws(HTTPParseError) {
        switch name.count {
        case 10 where HTTPSyntax.equalsIgnoringCase(name, "connection"):
            HTTPSyntax.forEachListElement(value) { option in
                if HTTPSyntax.equalsIgnoringCase(option, "close") { close = true }
                if HTTPSyntax.equalsIgnoringCase(option, "keep-alive") { keepAlive = true }
                return true
            }
        case 14 where HTTPSyntax.equalsIgnoringCase(name, "content-length"):
            contentLengthCount += 1
            contentLength = try Self.decimal(value)
        case 17 where HTTPSyntax.equalsIgnoringCase(name, "transfer-encoding"):
            transferEncoding = true
            HTTPSyntax.forEachListElement(value) { coding in
                if chunkedLast { codingAfterChunked = true }
                chunkedLast = HTTPSyntax.equalsIgnoringCase(coding, "chunked")
                if !chunkedLast {
                    if !coding.allSatisfy(HTTPSyntax.isTokenByte) { malformedCoding = true }
                    if otherCoding == nil { otherCoding = String(decoding: coding, as: UTF8.self) }
                }
                return true
            }
        default:
            break
        }
    }

    /// `1*DIGIT` (RFC 9110 section 8.6): no sign, no list, no spaces.
    private static func decimal(_ value: UnsafeRawBufferPointer) throws(HTTPParseError) -> Int {
        guard !value.isEmpty, value.allSatisfy({ $0 >= UInt8(ascii: "0") && $0 <= UInt8(ascii: "9") }) else {
            throw HTTPParseError(.invalidContentLength, "\"\(String(decoding: value.prefix(32), as: UTF8.self))\"")
        }
        guard value.count <= 18 else { return .max }
        return value.reduce(0) { $0 * 10 + Int($1 - UInt8(ascii: "0")) }
    }
}
