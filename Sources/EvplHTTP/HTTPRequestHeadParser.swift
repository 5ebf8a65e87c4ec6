import HTTPTypes

/// Parses a whole request head (request line, field lines, the empty line)
/// held in one piece, and decides its framing, by RFC 9112 and RFC 9110.
enum HTTPRequestHeadParser {
    /// The head in `bytes`, which starts with the request line and ends
    /// with the CRLF of the empty line.
    static func parse(_ bytes: UnsafeRawBufferPointer, limits: HTTPLimits) throws(HTTPParseError) -> HTTPRequestHead {
        var request = HTTPRequest(method: .get, scheme: nil, authority: nil, path: "/")
        return try parse(bytes, limits: limits, into: &request)
    }

    /// The head in `bytes`, its request written over `request`: where
    /// `request`'s storage is not shared, it is reused without allocating.
    static func parse(_ bytes: UnsafeRawBufferPointer, limits: HTTPLimits, into request: inout HTTPRequest) throws(HTTPParseError) -> HTTPRequestHead {
        let (line, section) = try HTTPFieldLines.splitHead(bytes)
        let (method, target, version) = try requestLine(line)
        var fieldCount = 0
        var hosts = 0
        var host: UnsafeRawBufferPointer?
        var framingFields = HTTPFramingFields()
        var expectsContinue = false
        try HTTPFieldLines.forEach(in: section, maximumCount: limits.fieldCount) { (name, value) throws(HTTPParseError) in
            if name.count == 4 && HTTPSyntax.equalsIgnoringCase(name, "host") {
                hosts += 1
                host = value
                return
            }
            if name.count == 6 && HTTPSyntax.equalsIgnoringCase(name, "expect") {
                guard HTTPSyntax.equalsIgnoringCase(value, "100-continue") else {
                    throw HTTPParseError(.unsupportedExpectation, "Expect: \(String(decoding: value, as: UTF8.self))")
                }
                expectsContinue = true
            }
            try framingFields.observe(name: name, value: value)
            try HTTPFieldLines.put(&request.headerFields, at: fieldCount, name: name, value: value)
            fieldCount += 1
        }
        HTTPFieldLines.truncate(&request.headerFields, to: fieldCount)
        let framing = try Self.framing(framingFields, version: version, limits: limits)

        // The parts as bytes: each becomes a string only when it differs
        // from the last head's (`set(_:to:)`).
        var authority: UnsafeRawBufferPointer?
        // `nil`: an absolute-form target without a path, which means `/`.
        var path: UnsafeRawBufferPointer? = target
        var scheme: UnsafeRawBufferPointer?
        switch try targetForm(target, method: method) {
        case .origin, .asterisk:
            break
        case .absolute(let schemeLength, let authorityRange):
            scheme = UnsafeRawBufferPointer(rebasing: target[0..<schemeLength])
            authority = UnsafeRawBufferPointer(rebasing: target[authorityRange])
            let rest = UnsafeRawBufferPointer(rebasing: target[authorityRange.upperBound...])
            path = rest.isEmpty ? nil : rest
        }
        // RFC 9112 section 3.2: exactly one valid Host in HTTP/1.1; an
        // absolute-form target's authority replaces it.
        if hosts > 1 { throw HTTPParseError(.invalidHost, "more than one Host field") }
        if hosts == 0 && version.minor >= 1 { throw HTTPParseError(.invalidHost, "no Host field") }
        if let host {
            guard host.allSatisfy(HTTPSyntax.isHostByte) else { throw HTTPParseError(.invalidHost, "a byte outside uri-host in Host") }
            if authority == nil { authority = host }
        }

        if !HTTPFieldLines.same(request.method.rawValue, method) {
            guard let requestMethod = HTTPRequest.Method(String(decoding: method, as: UTF8.self)) else {
                throw HTTPParseError(.invalidMethod)
            }
            request.method = requestMethod
        }
        if !HTTPFieldLines.same(request.scheme, scheme) { request.scheme = scheme.map { String(decoding: $0, as: UTF8.self) } }
        if !HTTPFieldLines.same(request.authority, authority) { request.authority = authority.map { String(decoding: $0, as: UTF8.self) } }
        if let path {
            if !HTTPFieldLines.same(request.path, path) { request.path = String(decoding: path, as: UTF8.self) }
        } else if request.path != "/" {
            request.path = "/"
        }
        let keepAlive = version.minor == 0 ? framingFields.keepAlive && !framingFields.close : !framingFields.close
        return HTTPRequestHead(request: request, version: version, keepAlive: keepAlive,
                               expectsContinue: expectsContinue && version.minor >= 1 && framing != .none, bodyFraming: framing)
    }

    /// Splits `method SP request-target SP HTTP-version`, each part checked.
    private static func requestLine(_ line: UnsafeRawBufferPointer) throws(HTTPParseError)
        -> (method: UnsafeRawBufferPointer, target: UnsafeRawBufferPointer, version: HTTPVersion) {
        var methodEnd = 0
        while methodEnd < line.count && HTTPSyntax.isTokenByte(line[methodEnd]) { methodEnd += 1 }
        guard methodEnd > 0, methodEnd < line.count, line[methodEnd] == HTTPSyntax.space else {
            throw methodEnd == 0 || (methodEnd < line.count && line[methodEnd] != HTTPSyntax.space)
                ? HTTPParseError(.invalidMethod, "the method is not a token") : HTTPParseError(.invalidRequestLine, "no request target")
        }
        var targetEnd = methodEnd + 1
        while targetEnd < line.count && HTTPSyntax.isTargetByte(line[targetEnd]) { targetEnd += 1 }
        guard targetEnd > methodEnd + 1, targetEnd < line.count, line[targetEnd] == HTTPSyntax.space else {
            throw targetEnd == methodEnd + 1 || (targetEnd < line.count && line[targetEnd] != HTTPSyntax.space)
                ? HTTPParseError(.invalidTarget, "a byte outside the URI grammar in the request target")
                : HTTPParseError(.invalidRequestLine, "no version")
        }
        let version = UnsafeRawBufferPointer(rebasing: line[(targetEnd + 1)...])
        return (UnsafeRawBufferPointer(rebasing: line[0..<methodEnd]),
                UnsafeRawBufferPointer(rebasing: line[(methodEnd + 1)..<targetEnd]),
                try Self.version(version))
    }

    /// `HTTP/DIGIT.DIGIT`, case-sensitive; a major version other than 1 is unsupported.
    private static func version(_ bytes: UnsafeRawBufferPointer) throws(HTTPParseError) -> HTTPVersion {
        let isDigit = { (byte: UInt8) in byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "9") }
        guard bytes.count == 8, bytes[0] == UInt8(ascii: "H"), bytes[1] == UInt8(ascii: "T"), bytes[2] == UInt8(ascii: "T"),
              bytes[3] == UInt8(ascii: "P"), bytes[4] == UInt8(ascii: "/"), isDigit(bytes[5]), bytes[6] == UInt8(ascii: "."), isDigit(bytes[7]) else {
            throw HTTPParseError(.invalidVersion, "\"\(String(decoding: bytes.prefix(16), as: UTF8.self))\"")
        }
        let major = Int(bytes[5] - UInt8(ascii: "0"))
        let minor = Int(bytes[7] - UInt8(ascii: "0"))
        guard major == 1 else { throw HTTPParseError(.unsupportedVersion, "HTTP/\(major).\(minor)") }
        return HTTPVersion(major: 1, minor: min(minor, 1))
    }

    /// The body's framing by RFC 9112 section 6.3 for requests: a length,
    /// chunked, or none; every ambiguity refused.
    private static func framing(_ fields: HTTPFramingFields, version: HTTPVersion, limits: HTTPLimits) throws(HTTPParseError) -> HTTPBodyFraming {
        if fields.transferEncoding {
            // Section 6.1: Transfer-Encoding in HTTP/1.0 is faulty framing.
            guard version.minor >= 1 else { throw HTTPParseError(.invalidTransferEncoding, "Transfer-Encoding in an HTTP/1.0 request") }
            guard fields.contentLengthCount == 0 else { throw HTTPParseError(.conflictingFraming, "both Content-Length and Transfer-Encoding") }
            guard !fields.malformedCoding else { throw HTTPParseError(.invalidTransferEncoding, "a coding that is not a token") }
            guard !fields.codingAfterChunked else { throw HTTPParseError(.invalidTransferEncoding, "a coding after chunked") }
            guard fields.chunkedLast else { throw HTTPParseError(.invalidTransferEncoding, "Transfer-Encoding does not end with chunked") }
            // A coding we lack matters only once the framing is otherwise sound.
            if let other = fields.otherCoding { throw HTTPParseError(.unsupportedTransferCoding, other) }
            return .chunked
        }
        guard fields.contentLengthCount <= 1 else { throw HTTPParseError(.invalidContentLength, "Content-Length repeated") }
        guard let length = fields.contentLength, length > 0 else { return .none }
        guard length <= limits.body else { throw HTTPParseError(.bodyTooLarge, "Content-Length above \(limits.body)") }
        return .length(length)
    }

    private enum TargetForm {
        case origin
        case asterisk
        case absolute(schemeLength: Int, authority: Range<Int>)
    }

    /// Which of RFC 9112 section 3.2's forms `target` takes; CONNECT's
    /// authority-form is refused, as this server opens no tunnels.
    private static func targetForm(_ target: UnsafeRawBufferPointer, method: UnsafeRawBufferPointer) throws(HTTPParseError) -> TargetForm {
        if method.elementsEqual("CONNECT".utf8) { throw HTTPParseError(.unsupportedMethod, "CONNECT") }
        if target[0] == UInt8(ascii: "/") { return .origin }
        if target.count == 1 && target[0] == UInt8(ascii: "*") {
            guard method.elementsEqual("OPTIONS".utf8) else { throw HTTPParseError(.invalidTarget, "* is for OPTIONS only") }
            return .asterisk
        }
        // absolute-form: scheme "://" authority path-abempty [ "?" query ]
        var schemeEnd = 0
        while schemeEnd < target.count, Self.isSchemeByte(target[schemeEnd], first: schemeEnd == 0) { schemeEnd += 1 }
        guard schemeEnd > 0, target.count >= schemeEnd + 3, target[schemeEnd] == UInt8(ascii: ":"),
              target[schemeEnd + 1] == UInt8(ascii: "/"), target[schemeEnd + 2] == UInt8(ascii: "/") else {
            throw HTTPParseError(.invalidTarget, "neither origin-form, absolute-form nor *")
        }
        let authorityStart = schemeEnd + 3
        var authorityEnd = authorityStart
        while authorityEnd < target.count, target[authorityEnd] != UInt8(ascii: "/") && target[authorityEnd] != UInt8(ascii: "?") && target[authorityEnd] != UInt8(ascii: "#") { authorityEnd += 1 }
        let authority = target[authorityStart..<authorityEnd]
        guard !authority.isEmpty, authority.allSatisfy({ HTTPSyntax.isHostByte($0) || $0 == UInt8(ascii: "@") }) else {
            throw HTTPParseError(.invalidTarget, "an absolute-form target without a valid authority")
        }
        return .absolute(schemeLength: schemeEnd, authority: authorityStart..<authorityEnd)
    }

    private static func isSchemeByte(_ byte: UInt8, first: Bool) -> Bool {
        let letter = (byte | 0x20) >= UInt8(ascii: "a") && (byte | 0x20) <= UInt8(ascii: "z")
        if first { return letter }
        return letter || (byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "9")) || "+-.".utf8.contains(byte)
    }
}
