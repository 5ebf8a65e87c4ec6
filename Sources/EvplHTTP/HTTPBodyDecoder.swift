import Evpl
import HTTPTypes

/// One piece of a message body as ``HTTPBodyDecoder`` frames it.
enum HTTPBodyFrame {
    /// Body bytes: the whole frame.
    case data
    /// Chunk sizes, the CRLF after chunk data: bytes the application never sees.
    case framing
    /// The last chunk and the trailer section, with the trailers if any.
    case end(trailers: HTTPFields?)
}

/// Frames a message body, requests' and responses' alike: a fixed length,
/// the chunked coding (RFC 9112 section 7.1), or, for a response, the rest
/// of the stream.
struct HTTPBodyDecoder {
    private enum State {
        case fixed(remaining: Int)
        case chunkLine
        case chunkData(remaining: Int)
        case chunkDataEnd
        case trailers
        case untilClose
        case done
    }

    private var state = State.done
    private var scanner = HTTPSectionScanner()
    /// Body bytes of the current chunked body so far.
    private var chunkedLength = 0
    /// Whether the frame decided last ended the body.
    private(set) var ended = false

    /// Starts a body framed as `framing`; `.none` has no bytes at all.
    mutating func start(_ framing: HTTPBodyFraming) {
        chunkedLength = 0
        switch framing {
        case .none: state = .done
        case .length(let length): state = length > 0 ? .fixed(remaining: length) : .done
        case .chunked: state = .chunkLine
        case .untilClose: state = .untilClose
        }
    }

    /// Whether no body is being read.
    var isDone: Bool {
        if case .done = state { return true }
        return false
    }

    /// The next frame of the body in `bytes` and its length, or `nil` until
    /// more bytes come.
    mutating func nextFrame(in bytes: ReceivedBytes, limits: HTTPLimits) throws(HTTPParseError) -> (frame: HTTPBodyFrame, length: Int)? {
        ended = false
        switch state {
        case .fixed(let remaining):
            let length = min(remaining, bytes.count)
            if length == remaining {
                state = .done
                ended = true
            } else {
                state = .fixed(remaining: remaining - length)
            }
            return (.data, length)
        case .untilClose:
            return (.data, bytes.count)
        case .chunkLine:
            guard let end = try chunkLineEnd(in: bytes, limit: limits.chunkLine) else { return nil }
            let size = try HTTPBytes.parse(bytes.subrange(from: 0, length: end)) { (raw) throws(HTTPParseError) in
                try HTTPChunkLine.size(raw, limit: limits.body)
            }
            if size == 0 {
                state = .trailers
            } else {
                chunkedLength += size
                guard chunkedLength <= limits.body else { throw HTTPParseError(.bodyTooLarge, "chunks adding up to more than \(limits.body) bytes") }
                state = .chunkData(remaining: size)
            }
            return (.framing, end)
        case .chunkData(let remaining):
            let length = min(remaining, bytes.count)
            state = length == remaining ? .chunkDataEnd : .chunkData(remaining: remaining - length)
            return (.data, length)
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
            state = .done
            ended = true
            guard end > 2 else { return (.end(trailers: nil), end) }
            let trailers = try HTTPBytes.parse(bytes.subrange(from: 0, length: end - 2)) { (raw) throws(HTTPParseError) in
                try HTTPFieldLines.parseTrailers(raw, limits: limits)
            }
            return (.end(trailers: trailers), end)
        case .done:
            preconditionFailure("no body is being read")
        }
    }

    /// The length of the chunk size line through its LF, once it has come.
    private func chunkLineEnd(in bytes: ReceivedBytes, limit: Int) throws(HTTPParseError) -> Int? {
        // A chunk line is short: searching it again as it grows costs little.
        let searched = min(bytes.count, limit)
        for index in 0..<searched where bytes[index] == HTTPSyntax.lf {
            guard index > 0, bytes[index - 1] == HTTPSyntax.cr else { throw HTTPParseError(.bareLineBreak, "an LF without a CR in a chunk line") }
            return index + 1
        }
        if bytes.count >= limit { throw HTTPParseError(.invalidChunk, "a chunk line longer than \(limit) bytes") }
        return nil
    }
}

/// Parsing received bytes in one piece.
enum HTTPBytes {
    /// Runs `parser` over `bytes` in one piece.
    static func parse<Value>(_ bytes: ReceivedBytes, _ parser: (UnsafeRawBufferPointer) throws(HTTPParseError) -> Value) throws(HTTPParseError) -> Value {
        let result = bytes.withContiguousBytes { raw in Result { () throws(HTTPParseError) in try parser(raw) } }
        return try result.get()
    }
}
