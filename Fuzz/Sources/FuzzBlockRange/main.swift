@testable import Evpl
import FuzzSupport
#if canImport(Glibc)
import Glibc
#endif

// The `blk-serve` request decoder (BlockRangeWire.swift, the server's own
// file, linked here) over a stream of requests cut into arbitrary pieces and
// fed through the server's fixed-length segmenter (`feedInPieces`): every
// whole request is decoded to the offset and length a flat reading of the
// stream gives, encodes back to its own bytes, and is rejected with EINVAL
// exactly when it is empty, longer than the largest range, or ends past the
// largest file offset; a trailing partial request is never delivered.
//
// Input: [8 bytes of chunking seed, stream...].

let loop = smallBufferLoop()

func bigEndian(_ bytes: ArraySlice<UInt8>) -> UInt64 {
    bytes.reduce(0) { $0 << 8 | UInt64($1) }
}

runFuzzer { bytes in
    guard bytes.count >= 8 else { return }
    let seed = bigEndian(ArraySlice(bytes[0..<8]))
    let stream = Array(bytes[8...])
    var decoded: [BlockRangeWire.Request] = []
    let error = feedInPieces(stream, seed: seed, through: Segmenters.fixedLength(BlockRangeWire.requestSize), on: loop) { message in
        decoded.append(BlockRangeWire.Request(decoding: message))
    }
    precondition(error?.code != .framing, "a stream of whole requests ended with \(String(describing: error))")
    precondition(decoded.count == stream.count / BlockRangeWire.requestSize, "\(decoded.count) requests from \(stream.count) bytes")
    for (index, request) in decoded.enumerated() {
        let start = index * BlockRangeWire.requestSize
        let flat = stream[start..<(start + BlockRangeWire.requestSize)]
        let offset = bigEndian(flat.prefix(8)), length = bigEndian(flat.suffix(4))
        precondition(request.offset == offset && UInt64(request.length) == length, "request \(index): \(request), flat \(offset), \(length)")
        precondition(request.encoded == Array(flat), "request \(index) does not encode back to its bytes")
        let servable = length >= 1 && length <= UInt64(BlockRangeWire.largestRange) && offset <= UInt64(Int64.max) - length
        precondition((request.rejection == nil) == servable, "request \(index): \(request), rejection \(String(describing: request.rejection))")
        precondition(request.rejection == nil || request.rejection == EINVAL)
        BlockRangeWire.withAnswerHeader(status: UInt32(truncatingIfNeeded: offset), count: Int(request.length)) { header in
            precondition(header.count == BlockRangeWire.answerHeaderSize)
            precondition(bigEndian(ArraySlice(header.prefix(4))) == UInt64(UInt32(truncatingIfNeeded: offset)), "answer status")
            precondition(bigEndian(ArraySlice(header.suffix(4))) == length, "answer count")
        }
    }
}
