import Evpl
@testable import EvplHTTP
import FuzzHTTPSupport
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
let decoder = HTTPRequestDecoder(parser: HTTPRequestHeads(),
                                 limits: HTTPLimits(requestLine: 64, fieldSection: 256, fieldCount: 8, body: 1024, chunkLine: 32))

runFuzzer { bytes in
    guard bytes.count >= 16 else { return }
    let (first, second) = chunkingSeeds(bytes)
    let stream = Array(bytes[16...])
    let describe = { (head: HTTPRequestHead) in
        "\(head.request.method) \(head.request.path ?? "") \(head.version) \(head.bodyFraming) \(head.keepAlive) \(head.request.headerFields.count)"
    }
    let one = frameLog(stream, decoder: decoder, seed: first, on: loop, describe: describe)
    let other = frameLog(stream, decoder: decoder, seed: second, on: loop, describe: describe)
    precondition(one == other, "two chunkings read differently:\n\(one)\n\(other)")
}
