import Evpl
import HTTPTypes

/// One piece of a request as the decoder frames the stream.
enum HTTPRequestFrame {
    /// The head; the frame is the whole header section.
    case head(HTTPRequestHead)
    /// Body bytes: the whole frame.
    case body
    /// Chunk sizes, the CRLF after chunk data: bytes the application never sees.
    case framing
    /// The last chunk and the trailer section, with the trailers if any.
    case end(trailers: HTTPFields?)
    /// The request cannot be read; the frame is every byte received.
    case failure(HTTPParseError)
}

/// Splits a connection's byte stream into the frames of HTTP/1 requests,
/// one decision at a time, as a `Segmenter` does: given the bytes not yet
/// consumed, how many form the next frame and what they are.
///
/// Body frames are views of the receive buffers, so bodies are never
/// copied. A frame is decided only once all its bytes have come, except
/// body frames, which take whatever of the body has come.
struct HTTPRequestDecoder {
    private var scanner = HTTPSectionScanner()
    private var body = HTTPBodyDecoder()
    private var failed = false
    let limits: HTTPLimits
    /// Whether the frame decided last was the request's last: its head
    /// when it has no body, or the last piece of a `Content-Length` body.
    private(set) var completesRequest = false

    init(limits: HTTPLimits) {
        self.limits = limits
    }

    /// Whether the decoder sits between requests: nothing of the next one
    /// has been framed.
    var isBetweenRequests: Bool { body.isDone && !failed }

    /// The next frame in `bytes` and its length, or `nil` until more bytes come.
    mutating func nextFrame(in bytes: ReceivedBytes) -> (frame: HTTPRequestFrame, length: Int)? {
        completesRequest = false
        guard !failed else { return (.framing, bytes.count) }
        do {
            return try decide(bytes)
        } catch {
            failed = true
            return (.failure(error), bytes.count)
        }
    }

    private mutating func decide(_ bytes: ReceivedBytes) throws(HTTPParseError) -> (frame: HTTPRequestFrame, length: Int)? {
        guard body.isDone else {
            guard let (frame, length) = try body.nextFrame(in: bytes, limits: limits) else { return nil }
            switch frame {
            case .data:
                completesRequest = body.ended
                return (.body, length)
            case .framing:
                return (.framing, length)
            case .end(let trailers):
                completesRequest = true
                return (.end(trailers: trailers), length)
            }
        }
        guard let end = try scanner.sectionEnd(in: bytes, firstLineLimit: limits.requestLine, sectionLimit: limits.fieldSection) else {
            return nil
        }
        let start = scanner.firstLineStart
        scanner.reset()
        let head = try HTTPBytes.parse(bytes.subrange(from: start, length: end - start)) { [limits] (raw) throws(HTTPParseError) in
            try HTTPRequestHeadParser.parse(raw, limits: limits)
        }
        body.start(head.bodyFraming)
        completesRequest = body.isDone
        return (.head(head), end)
    }
}
