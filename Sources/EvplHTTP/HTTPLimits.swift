/// How much of a request the server reads before it refuses it: every
/// limit bounds the memory one peer can hold and answers with the status
/// RFC 9110 names.
public struct HTTPLimits: Sendable, Hashable {
    /// The longest request line, CRLF included; longer gets 414.
    public var requestLine: Int
    /// The largest field section (request line excluded, and the trailer
    /// section of a chunked body); larger gets 431.
    public var fieldSection: Int
    /// The most field lines in a section; more gets 431.
    public var fieldCount: Int
    /// The largest body, by `Content-Length` or by the sum of its chunks;
    /// larger gets 413.
    public var body: Int
    /// The longest chunk size line, extensions and CRLF included; longer gets 400.
    public var chunkLine: Int

    /// Limits with the given values.
    public init(requestLine: Int = 8 << 10, fieldSection: Int = 16 << 10, fieldCount: Int = 100, body: Int = 1 << 20, chunkLine: Int = 1 << 10) {
        precondition(requestLine >= 16 && fieldSection >= 2 && fieldCount >= 1 && body >= 0 && chunkLine >= 3, "limits too small to hold a request")
        self.requestLine = requestLine
        self.fieldSection = fieldSection
        self.fieldCount = fieldCount
        self.body = body
        self.chunkLine = chunkLine
    }

    /// 8 KiB request line, 16 KiB and 100 fields, 1 MiB body, 1 KiB chunk lines.
    public static let `default` = HTTPLimits()
}
