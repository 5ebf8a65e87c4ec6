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
    private enum State {
        case head
        case fixedBody(remaining: Int)
        case chunkLine
        case chunkData(remaining: Int)
        case chunkDataEnd
        case trailers
        case failed
    }

    private var state = State.head
    private var scanner = HTTPSectionScanner()
    /// Body bytes of the current chunked request so far.
    private var chunkedBodyLength = 0
    let limits: HTTPLimits
    /// Whether the frame decided last was the request's last: its head
    /// when it has no body, or the last piece of a `Content-Length` body.
    private(set) var completesRequest = false

    init(limits: HTTPLimits) {
        self.limits = limits
    }

    /// Whether the decoder sits between requests: nothing of the next one
    /// has been framed.
    var isBetweenRequests: Bool {
        if case .head = state { return true }
        return false
    }

    /// The next frame in `bytes` and its length, or `nil` until more bytes come.
    mutating func nextFrame(in bytes: ReceivedBytes) -> (frame: HTTPRequestFrame, length: Int)? {
        completesRequest = false
        do {
            return try decide(bytes)
        } catch {
            state = .failed
            return (.failure(error), bytes.count)
        }
    }

    private mutating func decide(_ bytes: ReceivedBytes) throws(HTTPParseError) -> (frame: HTTPRequestFrame, length: Int)? {
        switch state {
        case .head:
            guard let end = try scanner.sectionEnd(in: bytes, firstLineLimit: limits.requestLine, sectionLimit: limits.fieldSection) else {
                return nil
            }
            let start = scanner.firstLineStart
            scanner.reset()
            let head = try Self.parse(bytes.subrange(from: start, length: end - start)) { [limits] (raw) throws(HTTPParseError) in
                try HTTPRequestHeadParser.parse(raw, limits: limits)
            }
            switch head.bodyFraming {
            case .none: completesRequest = true
            case .length(let length): state = .fixedBody(remaining: length)
            case .chunked:
                chunkedBodyLength = 0
                state = .chunkLine
            }
            return (.head(head), end)
        case .fixedBody(let remaining):
            let length = min(remaining, bytes.count)
            if length == remaining {
                state = .head
                completesRequest = true
            } else {
                state = .fixedBody(remaining: remaining - length)
            }
            return (.body, length)
        case .chunkLine:
            guard let end = try chunkLineEnd(in: bytes) else { return nil }
            let size = try Self.parse(bytes.subrange(from: 0, length: end)) { [limits] (raw) throws(HTTPParseError) in
                try HTTPChunkLine.size(raw, limit: limits.body)
            }
            if size == 0 {
                state = .trailers
            } else {
                chunkedBodyLength += size
                guard chunkedBodyLength <= limits.body else { throw HTTPParseError(.bodyTooLarge, "chunks adding up to more than \(limits.body) bytes") }
                state = .chunkData(remaining: size)
            }
            return (.framing, end)
        case .chunkData(let remaining):
            let length = min(remaining, bytes.count)
            state = length == remaining ? .chunkDataEnd : .chunkData(remaining: remaining - length)
            return (.body, length)
        case .chunkDataEnd:
            guard bytes.count >= 2 else { return nil }
            guard bytes[0] == HTTPSyntax.cr && bytes[1] == HTTPSyntax.lf else {
                throw HTTPParseError(.invalidChunk, "chunk data not followed by CRLF")
            }
            state = .chunkLine
            return (.framing, 2)
        case .trailers:
            guard let end = try scanner.sectionEnd(in: bytes, firstLineLimit: nil, sectionLimit: limits.fieldSection) else { return nil }
            scanner.reset()
            state = .head
            completesRequest = true
            guard end > 2 else { return (.end(trailers: nil), end) }
            let trailers = try Self.parse(bytes.subrange(from: 0, length: end - 2)) { [limits] (raw) throws(HTTPParseError) in
                try HTTPFieldLines.parseTrailers(raw, limits: limits)
            }
            return (.end(trailers: trailers), end)
        case .failed:
            return (.framing, bytes.count)
        }
    }

    /// Runs `parser` over `bytes` in one piece.
    private static func parse<Value>(_ bytes: ReceivedBytes, _ parser: (UnsafeRawBufferPointer) throws(HTTPParseError) -> Value) throws(HTTPParseError) -> Value {
        let result = bytes.withContiguousBytes { raw in Result { () throws(HTTPParseError) in try parser(raw) } }
        return try result.get()
    }

    /// The length of the chunk size line through its LF, once it has come.
    private mutating func chunkLineEnd(in bytes: ReceivedBytes) throws(HTTPParseError) -> Int? {
        // A chunk line is short: searching it again as it grows costs little.
        let searched = min(bytes.count, limits.chunkLine)
        for index in 0..<searched where bytes[index] == HTTPSyntax.lf {
            guard index > 0, bytes[index - 1] == HTTPSyntax.cr else { throw HTTPParseError(.bareLineBreak, "an LF without a CR in a chunk line") }
            return index + 1
        }
        if bytes.count >= limits.chunkLine { throw HTTPParseError(.invalidChunk, "a chunk line longer than \(limits.chunkLine) bytes") }
        return nil
    }
}
