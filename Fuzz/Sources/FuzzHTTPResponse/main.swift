import Evpl
@testable import EvplHTTP
import FuzzSupport
import HTTPTypes

// HTTP/1 response framing under arbitrary bytes and arbitrary chunking, as
// the client reads it: the decoder must never crash, never frame outside
// the bytes it was given, and read the same responses (interim and final
// heads, body bytes, trailers, and whether the stream failed) however the
// stream is cut. The first byte picks the request method (HEAD changes the
// framing).
//
// Input: [method, 16 bytes: two chunking seeds, stream...].

let loop = smallBufferLoop()
let limits = HTTPLimits(requestLine: 64, fieldSection: 256, fieldCount: 8, body: 1024, chunkLine: 32)

/// What the decoder read from `stream` cut into pieces by `seed`.
func read(_ stream: [UInt8], method: HTTPRequest.Method, seed: UInt64, on loop: EventLoop) -> [String] {
    var decoder = HTTPResponseDecoder(parser: HTTPResponseHeads(method: method), limits: limits)
    var frame: HTTPResponseFrame?
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
        case .informational(let head):
            log.append("interim \(head.response.status.code)")
        case .head(let head):
            flushBody()
            log.append("head \(head.response.status.code) \(head.version) \(head.bodyFraming) \(head.keepAlive) \(head.response.headerFields.count)")
            if decoder.completesMessage { log.append("end") }
        case .body:
            body += bytes.array
            if decoder.completesMessage {
                flushBody()
                log.append("end")
            }
        case .framing:
            break
        case .end(let trailers):
            flushBody()
            log.append("end \(trailers.map { "\($0.count)" } ?? "-")")
        case .failure:
            flushBody()
            log.append("failure")
        }
    }
    flushBody()
    return log
}

runFuzzer { bytes in
    guard bytes.count >= 17 else { return }
    let method: HTTPRequest.Method = bytes[0] & 1 == 0 ? .get : .head
    var seeds: [UInt64] = [0, 0]
    for index in 0..<16 { seeds[index / 8] = seeds[index / 8] << 8 | UInt64(bytes[1 + index]) }
    let stream = Array(bytes[17...])
    let first = read(stream, method: method, seed: seeds[0], on: loop)
    let second = read(stream, method: method, seed: seeds[1], on: loop)
    precondition(first == second, "two chunkings read differently:\n\(first)\n\(second)")
}
