import Evpl
import HTTPTypes

/// One piece of a message as ``HTTPMessageDecoder`` frames the stream.
enum HTTPFrame<Head> {
    /// An interim (1xx) response's head: a final one follows.
    case informational(Head)
    /// The head; the frame is the whole header section.
    case head(Head)
    /// Body bytes: the whole frame.
    case body
    /// Chunk sizes, the CRLF after chunk data: bytes the application never sees.
    case framing
    /// The last chunk and the trailer section, with the trailers if any.
    case end(trailers: HTTPFields?)
    /// The message cannot be read; the frame is every byte received.
    case failure(HTTPParseError)
}

/// Reads the heads of one direction's messages for ``HTTPMessageDecoder``.
protocol HTTPHeadParsing {
    associatedtype Head
    /// The head in `raw`, from its start line through its empty line.
    mutating func parse(_ raw: UnsafeRawBufferPointer, limits: HTTPLimits) throws(HTTPParseError) -> Head
    /// How the body after `head` is delimited.
    func framing(of head: Head) -> HTTPBodyFraming
    /// Whether `head` is an interim response another head follows.
    func isInterim(_ head: Head) throws(HTTPParseError) -> Bool
}

/// Splits a connection's byte stream into the frames of HTTP/1 messages,
/// one decision at a time, as a `Segmenter` does: given the bytes not yet
/// consumed, how many form the next frame and what they are.
///
/// Body frames are views of the receive buffers, so bodies are never
/// copied. A frame is decided only once all its bytes have come, except
/// body frames, which take whatever of the body has come.
struct HTTPMessageDecoder<Parser: HTTPHeadParsing> {
    /// Reads heads; a response's parser holds the method it answers.
    var parser: Parser
    let limits: HTTPLimits
    private var scanner = HTTPSectionScanner()
    private var body = HTTPBodyDecoder()
    private var failed = false
    private var untilClose = false
    /// Whether the frame decided last ended its message: a head without a
    /// body, the last piece of a `Content-Length` body, a chunked body's end.
    private(set) var completesMessage = false

    init(parser: Parser, limits: HTTPLimits) {
        self.parser = parser
        self.limits = limits
    }

    /// Whether the decoder sits between messages: nothing of the next one
    /// has been framed.
    var isBetweenMessages: Bool { body.isDone && !failed }

    /// Whether a body is being read that only the end of the stream ends.
    var readsUntilClose: Bool { !body.isDone && untilClose }

    /// The next frame in `bytes` and its length, or `nil` until more bytes come.
    mutating func nextFrame(in bytes: ReceivedBytes) -> (frame: HTTPFrame<Parser.Head>, length: Int)? {
        completesMessage = false
        guard !failed else { return (.framing, bytes.count) }
        do {
            return try decide(bytes)
        } catch {
            failed = true
            return (.failure(error), bytes.count)
        }
    }

    private mutating func decide(_ bytes: ReceivedBytes) throws(HTTPParseError) -> (frame: HTTPFrame<Parser.Head>, length: Int)? {
        guard body.isDone else {
            guard let (frame, length) = try body.nextFrame(in: bytes, limits: limits) else { return nil }
            switch frame {
            case .data:
                completesMessage = body.ended
                return (.body, length)
            case .framing:
                return (.framing, length)
            case .end(let trailers):
                completesMessage = true
                return (.end(trailers: trailers), length)
            }
        }
        guard let end = try scanner.sectionEnd(in: bytes, firstLineLimit: limits.requestLine, sectionLimit: limits.fieldSection) else {
            return nil
        }
        let start = scanner.firstLineStart
        scanner.reset()
        let limits = self.limits
        let head = try HTTPBytes.parse(bytes.subrange(from: start, length: end - start)) { (raw) throws(HTTPParseError) in
            try parser.parse(raw, limits: limits)
        }
        if try parser.isInterim(head) { return (.informational(head), end) }
        let framing = parser.framing(of: head)
        body.start(framing)
        untilClose = framing == .untilClose
        completesMessage = body.isDone
        return (.head(head), end)
    }
}

/// Request heads, for the server.
///
/// Each head is parsed into the same `HTTPRequest`: once the connection has
/// let go of the last head (its response has ended), swift-http-types'
/// storage is uniquely referenced again and is rewritten in place, so a
/// head costs no allocation unless a handler keeps it or a value is longer
/// than a small string.
struct HTTPRequestHeads: HTTPHeadParsing {
    private var reusable = HTTPRequest(method: .get, scheme: nil, authority: nil, path: "/")

    mutating func parse(_ raw: UnsafeRawBufferPointer, limits: HTTPLimits) throws(HTTPParseError) -> HTTPRequestHead {
        try HTTPRequestHeadParser.parse(raw, limits: limits, into: &reusable)
    }

    func framing(of head: HTTPRequestHead) -> HTTPBodyFraming { head.bodyFraming }

    func isInterim(_ head: HTTPRequestHead) -> Bool { false }
}

/// Response heads, for the client: the framing depends on the request's method.
struct HTTPResponseHeads: HTTPHeadParsing {
    /// The method of the request being answered: a response to HEAD has no body.
    var method: HTTPRequest.Method
    /// Reused as ``HTTPRequestHeads`` reuses its request.
    private var reusable = HTTPResponse(status: .ok)

    init(method: HTTPRequest.Method = .get) {
        self.method = method
    }

    mutating func parse(_ raw: UnsafeRawBufferPointer, limits: HTTPLimits) throws(HTTPParseError) -> HTTPResponseHead {
        try HTTPResponseHeadParser.parse(raw, method: method, limits: limits, into: &reusable)
    }

    func framing(of head: HTTPResponseHead) -> HTTPBodyFraming { head.bodyFraming }

    func isInterim(_ head: HTTPResponseHead) throws(HTTPParseError) -> Bool {
        guard head.response.status.kind == .informational else { return false }
        // 101 would switch protocols, which this client never asks for.
        guard head.response.status.code != 101 else { throw HTTPParseError(.invalidRequestLine, "101 Switching Protocols unasked") }
        return true
    }
}

typealias HTTPRequestDecoder = HTTPMessageDecoder<HTTPRequestHeads>
typealias HTTPRequestFrame = HTTPFrame<HTTPRequestHead>
typealias HTTPResponseDecoder = HTTPMessageDecoder<HTTPResponseHeads>
typealias HTTPResponseFrame = HTTPFrame<HTTPResponseHead>
