/// A model of what RFC 9112 (HTTP/1.1 message syntax) and RFC 9110 (HTTP
/// semantics) require of a server reading requests, from which the
/// conformance tests generate their cases. Nothing here comes from the
/// implementation: each outcome cites the section that demands it.

/// One dimension value of a well-formed request.
struct HTTPRequestShape: CustomStringConvertible {
    enum FieldStyle: String, CaseIterable {
        /// `X-A: 1`
        case plain
        /// `X-A:1`, no whitespace after the colon (RFC 9112 section 5.1: OWS is optional).
        case tight
        /// `X-A: \t1 \t`: whitespace around the value is not part of it (RFC 9110 section 5.5).
        case paddedValue
        /// `X-A:` with an empty value (RFC 9110 section 5.5: field-value may be empty).
        case emptyValue
        /// A value with obs-text bytes (UTF-8 `é`; RFC 9110 section 5.5 allows obs-text).
        case obsText
        /// Framing and Host field names in odd case: field names are case-insensitive (RFC 9110 section 5.1).
        case oddCaseNames
        /// Empty lines before the request line, which a server SHOULD ignore (RFC 9112 section 2.2).
        case leadingEmptyLines
    }

    enum Framing: String, CaseIterable {
        case none
        case zeroLength
        case length
        case chunked
    }

    enum Disposition: String, CaseIterable {
        case unspecified
        case close
        case keepAlive
    }

    var minorVersion: Int
    var method: String
    var target: String
    var fieldStyle: FieldStyle
    var framing: Framing
    var disposition: Disposition
    var expectContinue: Bool

    static let body = Array("hello, world".utf8)
    /// Method and target pairs: origin-form, absolute-form and asterisk-form
    /// (RFC 9112 section 3.2), and an extension method (any token, RFC 9110 section 9.1).
    static let methodsAndTargets: [(String, String)] = [
        ("GET", "/"), ("GET", "/a/b?c=d&e=%20f"), ("HEAD", "/head"), ("POST", "/post"), ("PUT", "/put"),
        ("DELETE", "/delete"), ("OPTIONS", "*"), ("PURGE-X.1", "/custom"), ("GET", "http://example.com:8080/abs?q=1"),
    ]

    /// Every combination the RFCs make meaningful: chunked exists only in
    /// HTTP/1.1 (RFC 9112 section 6.1), and 100-continue only with a body
    /// in HTTP/1.1 (RFC 9110 section 10.1.1).
    static var all: [HTTPRequestShape] {
        var shapes: [HTTPRequestShape] = []
        for minor in [0, 1] {
            for (method, target) in methodsAndTargets {
                for style in FieldStyle.allCases {
                    for framing in Framing.allCases where !(framing == .chunked && minor == 0) {
                        for disposition in Disposition.allCases {
                            let expects = minor == 1 && (framing == .length || framing == .chunked) ? [false, true] : [false]
                            for expect in expects {
                                shapes.append(HTTPRequestShape(minorVersion: minor, method: method, target: target, fieldStyle: style,
                                                               framing: framing, disposition: disposition, expectContinue: expect))
                            }
                        }
                    }
                }
            }
        }
        return shapes
    }

    var description: String {
        "HTTP/1.\(minorVersion) \(method) \(target) \(fieldStyle) \(framing) \(disposition)\(expectContinue ? " expect" : "")"
    }

    /// The head's bytes (through the empty line) and the body's.
    var wire: (head: [UInt8], body: [UInt8]) {
        var head = ""
        if fieldStyle == .leadingEmptyLines { head += "\r\n\r\n" }
        head += "\(method) \(target) HTTP/1.\(minorVersion)\r\n"
        head += fieldStyle == .oddCaseNames ? "hOST: example.org\r\n" : "Host: example.org\r\n"
        switch fieldStyle {
        case .plain, .oddCaseNames, .leadingEmptyLines: head += "X-A: 1\r\n"
        case .tight: head += "X-A:1\r\n"
        case .paddedValue: head += "X-A: \t1 \t\r\n"
        case .emptyValue: head += "X-A:\r\n"
        case .obsText: head += "X-A: caf\u{e9}\r\n"
        }
        switch disposition {
        case .unspecified: break
        case .close: head += "Connection: close\r\n"
        case .keepAlive: head += "Connection: keep-alive\r\n"
        }
        if expectContinue { head += "Expect: 100-continue\r\n" }
        var body: [UInt8] = []
        let lengthName = fieldStyle == .oddCaseNames ? "content-LENGTH" : "Content-Length"
        switch framing {
        case .none: break
        case .zeroLength: head += "\(lengthName): 0\r\n"
        case .length:
            head += "\(lengthName): \(Self.body.count)\r\n"
            body = Self.body
        case .chunked:
            head += fieldStyle == .oddCaseNames ? "TRANSFER-encoding: CHUNKED\r\n" : "Transfer-Encoding: chunked\r\n"
            // Two chunks, an extension with a quoted value, and a trailer (RFC 9112 section 7.1).
            body = Array("5;ext=\"a b\"\r\nhello\r\n7\r\n, world\r\n0\r\nX-T: done\r\n\r\n".utf8)
        }
        return (Array((head + "\r\n").utf8), body)
    }

    /// What the server must make of the request.
    var expected: [String: String] {
        let absolute = target.hasPrefix("http://")
        var result = [
            "method": method,
            "target": absolute ? "/abs?q=1" : target,
            "authority": absolute ? "example.com:8080" : "example.org",
            "scheme": absolute ? "http" : "",
            "version": "HTTP/1.\(minorVersion)",
            "keepalive": "\(keepsAlive)",
            "expect": "\(expectContinue)",
        ]
        switch framing {
        case .none, .zeroLength:
            result["framing"] = "none"
            result["body"] = ""
        case .length:
            result["framing"] = "length:\(Self.body.count)"
            result["body"] = Self.body.map { String(format2: $0) }.joined()
        case .chunked:
            result["framing"] = "chunked"
            result["body"] = Self.body.map { String(format2: $0) }.joined()
            result["trailers"] = "X-T:done"
        }
        return result
    }

    /// RFC 9112 section 9.3: HTTP/1.1 persists unless `close`; HTTP/1.0
    /// persists only with `keep-alive`.
    var keepsAlive: Bool {
        minorVersion == 1 ? disposition != .close : disposition == .keepAlive
    }

    /// The value the server must have read for `X-A`.
    var expectedFieldValue: String {
        switch fieldStyle {
        case .emptyValue: return ""
        case .obsText: return "caf\u{e9}"
        default: return "1"
        }
    }
}

/// A request the RFCs call malformed, and the statuses they allow in answer.
struct HTTPDefect: CustomStringConvertible, Sendable {
    var name: String
    var request: [UInt8]
    /// The statuses the cited section permits.
    var permitted: Set<Int>
    /// Where the RFC says so.
    var section: String

    init(_ name: String, _ request: String, _ permitted: Set<Int>, _ section: String) {
        self.name = name
        self.request = Array(request.utf8)
        self.permitted = permitted
        self.section = section
    }

    init(_ name: String, bytes: [UInt8], _ permitted: Set<Int>, _ section: String) {
        self.name = name
        self.request = bytes
        self.permitted = permitted
        self.section = section
    }

    var description: String { name }

    private static let host = "Host: h\r\n"

    /// The defects, grouped by the part of the message they break. The
    /// server under test has a 64 KiB body limit and the default others.
    static let all: [HTTPDefect] = requestLine + fieldLines + hosts + framing + chunked + others

    static let requestLine: [HTTPDefect] = [
        HTTPDefect("version-lowercase", "GET / http/1.1\r\n\(host)\r\n", [400], "RFC 9112 2.3: HTTP-name is case-sensitive"),
        HTTPDefect("version-two-digit-minor", "GET / HTTP/1.10\r\n\(host)\r\n", [400], "RFC 9112 2.3: DIGIT.DIGIT"),
        HTTPDefect("version-no-dot", "GET / HTTP/11\r\n\(host)\r\n", [400], "RFC 9112 2.3"),
        HTTPDefect("version-major-2", "GET / HTTP/2.0\r\n\(host)\r\n", [505], "RFC 9110 15.6.6"),
        HTTPDefect("version-major-0", "GET / HTTP/0.9\r\n\(host)\r\n", [505, 400], "RFC 9110 15.6.6"),
        HTTPDefect("http2-preface", "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", [505, 400], "RFC 9113 3.4 sent to an HTTP/1.1 server"),
        HTTPDefect("version-missing", "GET /\r\n\(host)\r\n", [400], "RFC 9112 3"),
        HTTPDefect("double-space", "GET  / HTTP/1.1\r\n\(host)\r\n", [400], "RFC 9112 3: single SP (lenient parsing is a MAY)"),
        HTTPDefect("tab-separator", "GET\t/ HTTP/1.1\r\n\(host)\r\n", [400], "RFC 9112 3"),
        HTTPDefect("space-in-target", "GET /a b HTTP/1.1\r\n\(host)\r\n", [400], "RFC 9112 3.2"),
        HTTPDefect("del-in-target", "GET /\u{7f} HTTP/1.1\r\n\(host)\r\n", [400], "RFC 3986 via RFC 9112 3.2"),
        HTTPDefect("method-not-token", "G(T / HTTP/1.1\r\n\(host)\r\n", [400], "RFC 9110 9.1: method = token"),
        HTTPDefect("leading-space", " GET / HTTP/1.1\r\n\(host)\r\n", [400], "RFC 9112 3"),
        HTTPDefect("trailing-space", "GET / HTTP/1.1 \r\n\(host)\r\n", [400], "RFC 9112 3"),
        HTTPDefect("bare-cr-request-line", "GET / HTTP/1.1\rX\r\n\(host)\r\n", [400], "RFC 9112 2.2"),
        HTTPDefect("request-line-too-long", "GET /\(String(repeating: "a", count: 9000)) HTTP/1.1\r\n\(host)\r\n", [414], "RFC 9112 3"),
        HTTPDefect("asterisk-not-options", "GET * HTTP/1.1\r\n\(host)\r\n", [400], "RFC 9112 3.2.4"),
        HTTPDefect("authority-form-not-connect", "GET example.com:80 HTTP/1.1\r\n\(host)\r\n", [400], "RFC 9112 3.2.3"),
        HTTPDefect("connect", "CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n", [501, 405], "RFC 9110 9.3.6: no tunnels here"),
    ]

    static let fieldLines: [HTTPDefect] = [
        HTTPDefect("space-before-colon", "GET / HTTP/1.1\r\nHost : h\r\n\r\n", [400], "RFC 9112 5.1: MUST reject"),
        HTTPDefect("obs-fold", "GET / HTTP/1.1\r\n\(host)X-A: 1\r\n 2\r\n\r\n", [400], "RFC 9112 5.2"),
        HTTPDefect("whitespace-after-start-line", "GET / HTTP/1.1\r\n X-A: 1\r\n\(host)\r\n", [400], "RFC 9112 2.2"),
        HTTPDefect("no-colon", "GET / HTTP/1.1\r\n\(host)X-A 1\r\n\r\n", [400], "RFC 9112 5"),
        HTTPDefect("empty-name", "GET / HTTP/1.1\r\n\(host): 1\r\n\r\n", [400], "RFC 9110 5.1: field-name = token"),
        HTTPDefect("quote-in-name", "GET / HTTP/1.1\r\n\(host)X\"A: 1\r\n\r\n", [400], "RFC 9110 5.1"),
        HTTPDefect("nul-in-value", "GET / HTTP/1.1\r\n\(host)X-A: 1\u{0}2\r\n\r\n", [400], "RFC 9110 5.5: MUST reject or replace"),
        HTTPDefect("del-in-value", "GET / HTTP/1.1\r\n\(host)X-A: 1\u{7f}\r\n\r\n", [400], "RFC 9110 5.5"),
        HTTPDefect("bare-cr-in-value", "GET / HTTP/1.1\r\n\(host)X-A: 1\r2\r\n\r\n", [400], "RFC 9112 2.2: MUST reject or replace"),
        HTTPDefect("bare-lf-field", "GET / HTTP/1.1\r\n\(host)X-A: 1\n\r\n", [400], "RFC 9112 2.2: accepting a lone LF is a MAY"),
        HTTPDefect("bare-lf-request-line", "GET / HTTP/1.1\n\(host)\r\n", [400], "RFC 9112 2.2"),
        HTTPDefect("section-too-large", "GET / HTTP/1.1\r\n\(host)" + String(repeating: "X-Pad: \(String(repeating: "p", count: 1000))\r\n", count: 20) + "\r\n",
                   [431], "RFC 6585 5"),
        HTTPDefect("too-many-fields", "GET / HTTP/1.1\r\n\(host)" + (0..<101).map { "X-\($0): 1\r\n" }.joined() + "\r\n", [431], "RFC 6585 5"),
    ]

    static let hosts: [HTTPDefect] = [
        HTTPDefect("host-missing", "GET / HTTP/1.1\r\n\r\n", [400], "RFC 9112 3.2: MUST respond 400"),
        HTTPDefect("host-twice", "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", [400], "RFC 9112 3.2: MUST respond 400"),
        HTTPDefect("host-space", "GET / HTTP/1.1\r\nHost: a b\r\n\r\n", [400], "RFC 9112 3.2: invalid field value"),
        HTTPDefect("host-slash", "GET / HTTP/1.1\r\nHost: a/b\r\n\r\n", [400], "RFC 9112 3.2"),
        HTTPDefect("host-userinfo", "GET / HTTP/1.1\r\nHost: u@a\r\n\r\n", [400], "RFC 9110 4.2.4: no userinfo in http URIs"),
    ]

    static let framing: [HTTPDefect] = [
        HTTPDefect("length-and-chunked", "POST / HTTP/1.1\r\n\(host)Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
                   [400], "RFC 9112 6.3: MAY reject; required for smuggling safety"),
        HTTPDefect("length-twice-same", "POST / HTTP/1.1\r\n\(host)Content-Length: 5\r\nContent-Length: 5\r\n\r\nhello", [400], "RFC 9110 8.6: MAY reject"),
        HTTPDefect("length-twice-differing", "POST / HTTP/1.1\r\n\(host)Content-Length: 5\r\nContent-Length: 6\r\n\r\nhello!", [400], "RFC 9112 6.3: MUST 400"),
        HTTPDefect("length-list", "POST / HTTP/1.1\r\n\(host)Content-Length: 5, 5\r\n\r\nhello", [400], "RFC 9110 8.6: MAY reject"),
        HTTPDefect("length-negative", "POST / HTTP/1.1\r\n\(host)Content-Length: -1\r\n\r\n", [400], "RFC 9112 6.3"),
        HTTPDefect("length-plus", "POST / HTTP/1.1\r\n\(host)Content-Length: +5\r\n\r\nhello", [400], "RFC 9110 8.6: 1*DIGIT"),
        HTTPDefect("length-hex", "POST / HTTP/1.1\r\n\(host)Content-Length: 0x5\r\n\r\nhello", [400], "RFC 9110 8.6"),
        HTTPDefect("length-inner-space", "POST / HTTP/1.1\r\n\(host)Content-Length: 1 0\r\n\r\n0123456789", [400], "RFC 9110 8.6"),
        HTTPDefect("length-empty", "POST / HTTP/1.1\r\n\(host)Content-Length:\r\n\r\n", [400], "RFC 9110 8.6"),
        HTTPDefect("length-suffix", "POST / HTTP/1.1\r\n\(host)Content-Length: 5a\r\n\r\nhello", [400], "RFC 9110 8.6"),
        HTTPDefect("length-above-limit", "POST / HTTP/1.1\r\n\(host)Content-Length: 65537\r\n\r\n", [413], "RFC 9110 15.5.14"),
        HTTPDefect("length-huge", "POST / HTTP/1.1\r\n\(host)Content-Length: 99999999999999999999999999\r\n\r\n", [413, 400], "RFC 9110 8.6 and 15.5.14"),
        HTTPDefect("coding-unknown-then-chunked", "POST / HTTP/1.1\r\n\(host)Transfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n", [501], "RFC 9112 6.1: SHOULD 501"),
        HTTPDefect("chunked-not-last", "POST / HTTP/1.1\r\n\(host)Transfer-Encoding: chunked, gzip\r\n\r\n", [400], "RFC 9112 6.3: MUST 400"),
        HTTPDefect("chunked-twice", "POST / HTTP/1.1\r\n\(host)Transfer-Encoding: chunked, chunked\r\n\r\n0\r\n\r\n", [400], "RFC 9112 6.1: MUST NOT apply chunked twice"),
        HTTPDefect("chunked-twice-fields", "POST / HTTP/1.1\r\n\(host)Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", [400], "RFC 9112 6.1"),
        HTTPDefect("coding-only-gzip", "POST / HTTP/1.1\r\n\(host)Transfer-Encoding: gzip\r\n\r\n", [400], "RFC 9112 6.3: MUST 400"),
        HTTPDefect("coding-identity", "POST / HTTP/1.1\r\n\(host)Transfer-Encoding: identity\r\n\r\n", [400, 501], "RFC 9112 6.3 (identity is no longer registered)"),
        HTTPDefect("coding-empty", "POST / HTTP/1.1\r\n\(host)Transfer-Encoding:\r\n\r\n", [400], "RFC 9112 6.1: 1#transfer-coding"),
        HTTPDefect("coding-near-chunked", "POST / HTTP/1.1\r\n\(host)Transfer-Encoding: xchunked\r\n\r\n", [400, 501], "RFC 9112 6.3"),
        HTTPDefect("chunked-in-http10", "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
                   [], "RFC 9112 6.1: treat the framing as faulty, process, then close"),
    ]

    private static func chunkedRequest(_ body: String) -> String {
        "POST / HTTP/1.1\r\n\(host)Transfer-Encoding: chunked\r\n\r\n" + body
    }

    static let chunked: [HTTPDefect] = [
        HTTPDefect("chunk-size-0x", chunkedRequest("0x5\r\nhello\r\n0\r\n\r\n"), [400], "RFC 9112 7.1: chunk-size = 1*HEXDIG"),
        HTTPDefect("chunk-size-plus", chunkedRequest("+5\r\nhello\r\n0\r\n\r\n"), [400], "RFC 9112 7.1"),
        HTTPDefect("chunk-size-leading-space", chunkedRequest(" 5\r\nhello\r\n0\r\n\r\n"), [400], "RFC 9112 7.1"),
        HTTPDefect("chunk-size-trailing-space", chunkedRequest("5 \r\nhello\r\n0\r\n\r\n"), [400], "RFC 9112 7.1.1: BWS only before ;"),
        HTTPDefect("chunk-size-not-hex", chunkedRequest("g\r\nhello\r\n0\r\n\r\n"), [400], "RFC 9112 7.1"),
        HTTPDefect("chunk-size-empty", chunkedRequest("\r\nhello\r\n0\r\n\r\n"), [400], "RFC 9112 7.1"),
        HTTPDefect("chunk-ext-no-name", chunkedRequest("5;\r\nhello\r\n0\r\n\r\n"), [400], "RFC 9112 7.1.1"),
        HTTPDefect("chunk-ext-no-value", chunkedRequest("5;a=\r\nhello\r\n0\r\n\r\n"), [400], "RFC 9112 7.1.1"),
        HTTPDefect("chunk-ext-open-quote", chunkedRequest("5;a=\"x\r\nhello\r\n0\r\n\r\n"), [400], "RFC 9112 7.1.1"),
        HTTPDefect("chunk-ext-too-long", chunkedRequest("5;a=\(String(repeating: "b", count: 2000))\r\nhello\r\n0\r\n\r\n"), [400],
                   "RFC 9112 7.1.1: a server limits extension length"),
        HTTPDefect("chunk-no-crlf-after-data", chunkedRequest("5\r\nhelloX\r\n0\r\n\r\n"), [400], "RFC 9112 7.1"),
        HTTPDefect("chunk-bare-lf", chunkedRequest("5\nhello\r\n0\r\n\r\n"), [400], "RFC 9112 2.2"),
        HTTPDefect("chunk-size-huge", chunkedRequest("fffffffffffffffffffffff\r\nhello\r\n0\r\n\r\n"), [400, 413], "RFC 9112 7.1: a recipient MUST anticipate overflow"),
        HTTPDefect("chunks-above-limit", chunkedRequest("8000\r\n\(String(repeating: "x", count: 0x8000))\r\n8001\r\n"), [413], "RFC 9110 15.5.14"),
        HTTPDefect("trailer-obs-fold", chunkedRequest("0\r\nX-T: 1\r\n 2\r\n\r\n"), [400], "RFC 9112 5.2"),
        HTTPDefect("trailer-bare-lf", chunkedRequest("0\r\nX-T: 1\n\r\n"), [400], "RFC 9112 2.2"),
    ]

    static let others: [HTTPDefect] = [
        HTTPDefect("expect-unknown", "POST / HTTP/1.1\r\n\(host)Expect: 101-checkpoint\r\nContent-Length: 1\r\n\r\nx", [417], "RFC 9110 10.1.1: MAY 417"),
        HTTPDefect("random-bytes", bytes: (0..<512).map { UInt8(truncatingIfNeeded: $0 &* 131 &+ 7) } + [13, 10, 13, 10], [400], "RFC 9112 2.2"),
    ]
}

/// Where this server answers differently from what the RFCs permit, and why.
/// A defect whose answer differs from the RFC and is not listed here fails,
/// and so does an entry the server no longer needs.
let httpDivergences: [String: (status: Int, reason: String)] = [
    "chunked-in-http10": (400, "RFC 9112 6.1 asks the server to process the message as if its framing were faulty, then close. "
        + "No framing of it is trustworthy (that is the point of the rule), so the server reads none of it: 400, then close."),
]
