import Evpl
@testable import EvplHTTP
import FuzzSupport

/// What `decoder` reads from `stream` cut into pieces by `seed`, driving a
/// real connection's delivery path: a line per head, per body (its bytes
/// gathered), per end and per failure. Two chunkings of one stream must
/// give the same log.
public func frameLog<Parser: HTTPHeadParsing>(_ stream: [UInt8], decoder: HTTPMessageDecoder<Parser>, seed: UInt64, on loop: EventLoop,
                                              describe: @escaping (Parser.Head) -> String) -> [String] {
    var decoder = decoder
    var frame: HTTPFrame<Parser.Head>?
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
            log.append("interim \(describe(head))")
        case .head(let head):
            flushBody()
            log.append("head \(describe(head))")
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
            // Which limit or defect is met first may depend on where the pieces fall; that one is, not.
            log.append("failure")
        }
    }
    flushBody()
    return log
}

/// Two seeds from the input's first 16 bytes.
public func chunkingSeeds(_ bytes: UnsafeRawBufferPointer) -> (UInt64, UInt64) {
    var seeds: [UInt64] = [0, 0]
    for index in 0..<16 { seeds[index / 8] = seeds[index / 8] << 8 | UInt64(bytes[index]) }
    return (seeds[0], seeds[1])
}
