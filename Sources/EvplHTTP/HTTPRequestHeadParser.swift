import HTTPTypes

/// Parses a whole request head (request line, field lines, the empty line)
/// held in one piece, and decides its framing, by RFC 9112 and RFC 9110.
enum HTTPRequestHeadParser {
    /// The head in `bytes`, which starts with the request line and ends
    /// with the CRLF of the empty line.
    static func parse(_ bytes: UnsafeRawBufferPointer, limits: HTTPLimits) throws(HTTPParseError) -> HTTPRequestHead {
        var lineEnd = 0
        while lineEnd < bytes.count && bytes[lineEnd] != HTTPSyntax.cr && bytes[lineEnd] != HTTPSyntax.lf { lineEnd += 1 }
        guard lineEnd + 1 < bytes.count, bytes[lineEnd] == HTTPSyntax.cr, bytes[lineEnd + 1] == HTTPSyntax.lf else {
            throw HTTPParseError(.bareLineBreak, "in the request line")
        }
        let line = UnsafeRawBufferPointer(rebasing: bytes[0..<lineEnd])
        let (method, target, version) = try requestLine(line)

        let section = UnsafeRawBufferPointer(rebasing: bytes[(lineEnd + 2)..<(bytes.count - 2)])
        var fields = HTTPFields()
        // One allocation for the fields instead of one per doubling.
        fields.reserveCapacity(section.reduce(0) { $1 == HTTPSyntax.lf ? $0 + 1 : $0 })
        var hosts = 0
        var host: UnsafeRawBufferPointer?
        var contentLengths = 0
        var contentLength: Int?
        var transferEncoding = false
        var chunked = false
        var close = false
        var keepAliveToken = false
        var expectsContinue = false
        try HTTPFieldLines.forEach(in: section, maximumCount: limits.fieldCount) { (name, value) throws(HTTPParseError) in
            switch name.count {
            case 4 where HTTPSyntax.equalsIgnoringCase(name, "host"):
                hosts += 1
                host = value
                return
            case 6 where HTTPSyntax.equalsIgnoringCase(name, "expect"):
                guard HTTPSyntax.equalsIgnoringCase(value, "100-continue") else {
                    throw HTTPParseError(.unsupportedExpectation, "Expect: \(String(decoding: value, as: UTF8.self))")
                }
                expectsContinue = true
            case 10 where HTTPSyntax.equalsIgnoringCase(name, "connection"):
                HTTPSyntax.forEachListElement(value) { option in
                    if HTTPSyntax.equalsIgnoringCase(option, "close") { close = true }
                    if HTTPSyntax.equalsIgnoringCase(option, "keep-alive") { keepAliveToken = true }
                    return true
                }
            case 14 where HTTPSyntax.equalsIgnoringCase(name, "content-length"):
                contentLengths += 1
                contentLength = try Self.contentLength(value, limits: limits)
            case 17 where HTTPSyntax.equalsIgnoringCase(name, "transfer-encoding"):
                transferEncoding = true
                try Self.transferCodings(value, chunked: &chunked)
            default:
                break
            }
            fields.append(try HTTPFieldLines.field(name: name, value: value))
        }

        // RFC 9112 section 6.1: Transfer-Encoding in HTTP/1.0 is faulty framing.
        if transferEncoding && version.minor == 0 {
            throw HTTPParseError(.invalidTransferEncoding, "Transfer-Encoding in an HTTP/1.0 request")
        }
        if transferEncoding && contentLengths > 0 {
            throw HTTPParseError(.conflictingFraming, "both Content-Length and Transfer-Encoding")
        }
        if contentLengths > 1 { throw HTTPParseError(.invalidContentLength, "Content-Length repeated") }
        if transferEncoding && !chunked {
            throw HTTPParseError(.invalidTransferEncoding, "Transfer-Encoding does not end with chunked")
        }

        var authority: String?
        let path: String
        var scheme: String?
        switch try targetForm(target, method: method) {
        case .origin, .asterisk:
            path = String(decoding: target, as: UTF8.self)
        case .absolute(let schemeLength, let authorityRange):
            scheme = String(decoding: UnsafeRawBufferPointer(rebasing: target[0..<schemeLength]), as: UTF8.self)
            authority = String(decoding: UnsafeRawBufferPointer(rebasing: target[authorityRange]), as: UTF8.self)
            let rest = UnsafeRawBufferPointer(rebasing: target[authorityRange.upperBound...])
            path = rest.isEmpty ? "/" : String(decoding: rest, as: UTF8.self)
        }
        // RFC 9112 section 3.2: exactly one valid Host in HTTP/1.1; an
        // absolute-form target's authority replaces it.
        if hosts > 1 { throw HTTPParseError(.invalidHost, "more than one Host field") }
        if hosts == 0 && version.minor >= 1 { throw HTTPParseError(.invalidHost, "no Host field") }
        if let host {
            guard host.allSatisfy(Self.isHostByte) else { throw HTTPParseError(.invalidHost, "a byte outside uri-host in Host") }
            if authority == nil { authority = String(decoding: host, as: UTF8.self) }
        }

        let framing: HTTPBodyFraming
        if chunked {
            framing = .chunked
        } else if let contentLength, contentLength > 0 {
            framing = .length(contentLength)
        } else {
            framing = .none
        }
        guard let requestMethod = HTTPRequest.Method(String(decoding: method, as: UTF8.self)) else {
            throw HTTPParseError(.invalidMethod)
        }
        let request = HTTPRequest(method: requestMethod, scheme: scheme, authority: authority, path: path, headerFields: fields)
        let keepAlive = version.minor == 0 ? keepAliveToken && !close : !close
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
        guard bytes.count == 8, bytes.starts(with: "HTTP/".utf8), isDigit(bytes[5]), bytes[6] == UInt8(ascii: "."), isDigit(bytes[7]) else {
            throw HTTPParseError(.invalidVersion, "\"\(String(decoding: bytes.prefix(16), as: UTF8.self))\"")
        }
        let major = Int(bytes[5] - UInt8(ascii: "0"))
        let minor = Int(bytes[7] - UInt8(ascii: "0"))
        guard major == 1 else { throw HTTPParseError(.unsupportedVersion, "HTTP/\(major).\(minor)") }
        return HTTPVersion(major: 1, minor: min(minor, 1))
    }

    /// A `Content-Length` value: `1*DIGIT` and no more than the body limit.
    private static func contentLength(_ value: UnsafeRawBufferPointer, limits: HTTPLimits) throws(HTTPParseError) -> Int {
        guard !value.isEmpty else { throw HTTPParseError(.invalidContentLength, "empty") }
        var length = 0
        for byte in value {
            guard byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "9") else {
                throw HTTPParseError(.invalidContentLength, "\"\(String(decoding: value.prefix(32), as: UTF8.self))\"")
            }
            length = length * 10 + Int(byte - UInt8(ascii: "0"))
            // Past the limit nothing else matters (and the number cannot overflow).
            if length > limits.body { throw HTTPParseError(.bodyTooLarge, "Content-Length above \(limits.body)") }
        }
        return length
    }

    /// Checks a `Transfer-Encoding` list: chunked once and last, no other coding.
    private static func transferCodings(_ value: UnsafeRawBufferPointer, chunked: inout Bool) throws(HTTPParseError) {
        var failure: HTTPParseError?
        var sawCoding = false
        HTTPSyntax.forEachListElement(value) { coding in
            sawCoding = true
            if chunked {
                // Anything after chunked, chunked again included, leaves the length unknowable.
                failure = HTTPParseError(.invalidTransferEncoding, "a coding after chunked")
                return false
            }
            if HTTPSyntax.equalsIgnoringCase(coding, "chunked") {
                chunked = true
            } else if failure == nil {
                failure = coding.allSatisfy(HTTPSyntax.isTokenByte)
                    ? HTTPParseError(.unsupportedTransferCoding, String(decoding: coding, as: UTF8.self))
                    : HTTPParseError(.invalidTransferEncoding, "a coding that is not a token")
            }
            return true
        }
        if !sawCoding { failure = HTTPParseError(.invalidTransferEncoding, "empty") }
        if let failure {
            // A coding we lack matters only once the framing is otherwise sound.
            if failure.kind == .unsupportedTransferCoding && !chunked {
                throw HTTPParseError(.invalidTransferEncoding, "Transfer-Encoding does not end with chunked")
            }
            throw failure
        }
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
        while authorityEnd < target.count, !"/?#".utf8.contains(target[authorityEnd]) { authorityEnd += 1 }
        let authority = target[authorityStart..<authorityEnd]
        guard !authority.isEmpty, authority.allSatisfy({ Self.isHostByte($0) || $0 == UInt8(ascii: "@") }) else {
            throw HTTPParseError(.invalidTarget, "an absolute-form target without a valid authority")
        }
        return .absolute(schemeLength: schemeEnd, authority: authorityStart..<authorityEnd)
    }

    private static func isSchemeByte(_ byte: UInt8, first: Bool) -> Bool {
        let letter = (byte | 0x20) >= UInt8(ascii: "a") && (byte | 0x20) <= UInt8(ascii: "z")
        if first { return letter }
        return letter || (byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "9")) || "+-.".utf8.contains(byte)
    }

    /// A byte of `uri-host [ ":" port ]`: unreserved, pct-encoded,
    /// sub-delims, the colon and IP-literal brackets.
    private static func isHostByte(_ byte: UInt8) -> Bool {
        let letter = (byte | 0x20) >= UInt8(ascii: "a") && (byte | 0x20) <= UInt8(ascii: "z")
        return letter || (byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "9")) || "-._~%!$&'()*+,;=:[]".utf8.contains(byte)
    }
}
