import HTTPTypes

/// Parses a whole response head (status line, field lines, the empty line)
/// held in one piece, and decides its framing by RFC 9112 section 6.3.
enum HTTPResponseHeadParser {
    /// The head in `bytes`, which starts with the status line and ends with
    /// the CRLF of the empty line, of a response to a request with `method`.
    static func parse(_ bytes: UnsafeRawBufferPointer, method: HTTPRequest.Method, limits: HTTPLimits) throws(HTTPParseError) -> HTTPResponseHead {
        var response = HTTPResponse(status: .ok)
        return try parse(bytes, method: method, limits: limits, into: &response)
    }

    /// The head in `bytes`, its response written over `response`: where
    /// `response`'s storage is not shared, it is reused without allocating.
    static func parse(_ bytes: UnsafeRawBufferPointer, method: HTTPRequest.Method, limits: HTTPLimits,
                      into response: inout HTTPResponse) throws(HTTPParseError) -> HTTPResponseHead {
        let (line, section) = try HTTPFieldLines.splitHead(bytes)
        let (version, status) = try statusLine(line)
        var framingFields = HTTPFramingFields()
        var fieldCount = 0
        try HTTPFieldLines.forEach(in: section, maximumCount: limits.fieldCount) { (name, value) throws(HTTPParseError) in
            try framingFields.observe(name: name, value: value)
            try HTTPFieldLines.put(&response.headerFields, at: fieldCount, name: name, value: value)
            fieldCount += 1
        }
        HTTPFieldLines.truncate(&response.headerFields, to: fieldCount)
        // RFC 9112 section 6.1: Transfer-Encoding in an HTTP/1.0 message is faulty framing.
        if framingFields.transferEncoding && version.minor == 0 {
            throw HTTPParseError(.invalidTransferEncoding, "Transfer-Encoding in an HTTP/1.0 response")
        }
        let framing = try Self.framing(framingFields, status: status.code, method: method, limits: limits)
        let persistent = version.minor == 0 ? framingFields.keepAlive && !framingFields.close : !framingFields.close
        // swift-http-types writes (and later parses) the status as a field: only when it changes.
        let current = response.status
        if current.code != status.code || current.reasonPhrase != status.reasonPhrase { response.status = status }
        return HTTPResponseHead(response: response, version: version, keepAlive: persistent && framing != .untilClose, bodyFraming: framing)
    }

    /// `HTTP-version SP 3DIGIT SP [ reason-phrase ]`.
    private static func statusLine(_ line: UnsafeRawBufferPointer) throws(HTTPParseError) -> (HTTPVersion, HTTPResponse.Status) {
        let isDigit = { (byte: UInt8) in byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "9") }
        guard line.count >= 12, line[0] == UInt8(ascii: "H"), line[1] == UInt8(ascii: "T"), line[2] == UInt8(ascii: "T"),
              line[3] == UInt8(ascii: "P"), line[4] == UInt8(ascii: "/"), isDigit(line[5]), line[6] == UInt8(ascii: "."), isDigit(line[7]),
              line[8] == HTTPSyntax.space, isDigit(line[9]), isDigit(line[10]), isDigit(line[11]),
              line.count == 12 || line[12] == HTTPSyntax.space else {
            throw HTTPParseError(.invalidRequestLine, "a malformed status line")
        }
        guard line[5] == UInt8(ascii: "1") else { throw HTTPParseError(.unsupportedVersion, "HTTP/\(line[5] - 48).\(line[7] - 48)") }
        let code = Int(line[9] - 48) * 100 + Int(line[10] - 48) * 10 + Int(line[11] - 48)
        guard code >= 100 else { throw HTTPParseError(.invalidRequestLine, "status \(code)") }
        let reason = line.count > 13 ? UnsafeRawBufferPointer(rebasing: line[13...]) : UnsafeRawBufferPointer(start: nil, count: 0)
        guard reason.allSatisfy(HTTPSyntax.isFieldValueByte) else { throw HTTPParseError(.invalidRequestLine, "a control byte in the reason phrase") }
        return (HTTPVersion(major: 1, minor: min(Int(line[7] - 48), 1)),
                HTTPResponse.Status(code: code, reasonPhrase: String(decoding: reason, as: UTF8.self)))
    }

    /// The body's framing by RFC 9112 section 6.3 for responses.
    private static func framing(_ fields: HTTPFramingFields, status: Int, method: HTTPRequest.Method, limits: HTTPLimits) throws(HTTPParseError) -> HTTPBodyFraming {
        if method == .head || (100..<200).contains(status) || status == 204 || status == 304 { return .none }
        if fields.transferEncoding {
            // A response with both may be splitting the stream (section 6.3): refused.
            guard fields.contentLengthCount == 0 else { throw HTTPParseError(.conflictingFraming, "both Content-Length and Transfer-Encoding") }
            guard !(fields.chunkedLast && fields.codingAfterChunked) else { throw HTTPParseError(.invalidTransferEncoding, "chunked twice") }
            return fields.chunkedLast ? .chunked : .untilClose
        }
        guard fields.contentLengthCount <= 1 else { throw HTTPParseError(.invalidContentLength, "Content-Length repeated") }
        guard let length = fields.contentLength else { return .untilClose }
        guard length <= limits.body else { throw HTTPParseError(.bodyTooLarge, "Content-Length above \(limits.body)") }
        return length > 0 ? .length(length) : .none
    }
}
