import Evpl
@testable import EvplHTTP
import FuzzSupport

// HTTP/1 request framing under arbitrary bytes and arbitrary chunking: the
// decoder, driving a real connection's delivery path as the server's
// segmenter, must never crash, never frame outside the bytes it was given,
// and read the same requests (heads, body bytes, trailers, and whether the
// stream failed) however the stream is cut into pieces.
//
// Input: [16 bytes: two chunking seeds, stream...]. Small limits, so that
// every limit is reached.

let loop = smallBufferLoop()
let limits = HTTPLimits(requestLine: 64, fieldSection: 256, fieldCount: 8, body: 1024, chunkLine: 32)

/// What the decoder read from `stream` cut into pieces by `seed`.
func read(_ stream: [UInt8], seed: UInt64, on loop: EventLoop) -> [String] {
    var decoder = HTTPRequestDecoder(parser: HTTPRequestHeads(), limits: limits)
    var frame: HTTPRequestFrame?
    var log: [String] = []
    var body: [UInt8] = []
    func flushBody() {
        if !body.isEmpty { log.append("body \(body)") }
        body = []
    }
    let segmenter: Segmenter = { bytes in
        guard let (next, length) = decoder.nextFrame(in: bytes) else { return .needMoreBytes }
        precondition(length > 0 && length <= bytes.count, "a frame of \(length) bytes out of \(bytes.count)")
        frame = next
        return .message(length: length)
    }
    _ = feedInPieces(stream, seed: seed, through: segmenter, on: loop) { bytes in
        switch frame! {
        case .head(let head):
            flushBody()
            log.append("head \(head.request.method) \(head.request.path ?? "") \(head.version) \(head.bodyFraming) \(head.keepAlive) \(head.request.headerFields.count)")
            if decoder.completesMessage { log.append("end") }
        case .body:
            body += bytes.array
            if decoder.completesMessage {
                flushBody()
                log.append("end")
            }
        case .framing, .informational:
            break
        case .end(let trailers):
            flushBody()
            log.append("end \(trailers.map { "\($0.count)" } ?? "-")")
        case .failure:
            flushBody()
            // Which limit or defect is met first may depend on where the pieces fall; that one is, not.
            log.append("failure")
        }
    }
    flushBody()
    return log
}

runFuzzer { bytes in
    guard bytes.count >= 16 else { return }
    var seeds: [UInt64] = [0, 0]
    for index in 0..<16 { seeds[index / 8] = seeds[index / 8] << 8 | UInt64(bytes[index]) }
    let stream = Array(bytes[16...])
    let first = read(stream, seed: seeds[0], on: loop)
    let second = read(stream, seed: seeds[1], on: loop)
    precondition(first == second, "two chunkings read differently:\n\(first)\n\(second)")
}
