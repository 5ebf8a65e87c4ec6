import Evpl
@testable import EvplHTTP
import FuzzHTTPSupport
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

runFuzzer { bytes in
    guard bytes.count >= 17 else { return }
    let method: HTTPRequest.Method = bytes[0] & 1 == 0 ? .get : .head
    let decoder = HTTPResponseDecoder(parser: HTTPResponseHeads(method: method), limits: limits)
    let (first, second) = chunkingSeeds(UnsafeRawBufferPointer(rebasing: bytes[1...]))
    let stream = Array(bytes[17...])
    let describe = { (head: HTTPResponseHead) in
        "\(head.response.status.code) \(head.version) \(head.bodyFraming) \(head.keepAlive) \(head.response.headerFields.count)"
    }
    let one = frameLog(stream, decoder: decoder, seed: first, on: loop, describe: describe)
    let other = frameLog(stream, decoder: decoder, seed: second, on: loop, describe: describe)
    precondition(one == other, "two chunkings read differently:\n\(one)\n\(other)")
}
