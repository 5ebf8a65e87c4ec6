@testable import Evpl
import FuzzSupport
#if canImport(Glibc)
import Glibc
#endif

// A stream cut into arbitrary pieces and fed to a connection's real
// delivery path through a ready-made segmenter (`feedInPieces`): the
// messages delivered must be exactly those a whole-stream reference framing
// finds, in order, and a malformed stream must end the connection with a
// framing error, whatever the pieces.
//
// Input: [kind, parameter, delimiter length, 8 bytes of chunking seed,
// delimiter bytes..., stream...].

let loop = smallBufferLoop()

struct Framing {
    var segmenter: Segmenter
    /// The messages of `stream`, and whether it is malformed after them.
    var reference: ([UInt8]) -> (messages: [[UInt8]], malformed: Bool)
}

func lengthPrefixed(maximumPayload: Int) -> Framing {
    Framing(segmenter: Segmenters.lengthPrefixed32(maximumPayload: maximumPayload)) { stream in
        var messages: [[UInt8]] = []
        var position = 0
        while stream.count - position >= 4 {
            let payload = stream[position..<(position + 4)].reduce(0) { $0 << 8 | Int($1) }
            if payload > maximumPayload { return (messages, true) }
            guard stream.count - position >= 4 + payload else { break }
            messages.append(Array(stream[position..<(position + 4 + payload)]))
            position += 4 + payload
        }
        return (messages, false)
    }
}

func delimited(by delimiter: [UInt8], maximumLength: Int) -> Framing {
    Framing(segmenter: Segmenters.delimited(by: delimiter, maximumLength: maximumLength)) { stream in
        var messages: [[UInt8]] = []
        var position = 0
        while position < stream.count {
            let window = min(stream.count, position + maximumLength)
            let end = (position...max(position, window - delimiter.count)).first { start in
                start + delimiter.count <= window && Array(stream[start..<(start + delimiter.count)]) == delimiter
            }.map { $0 + delimiter.count }
            guard let end else { return (messages, stream.count - position >= maximumLength) }
            messages.append(Array(stream[position..<end]))
            position = end
        }
        return (messages, false)
    }
}

runFuzzer { bytes in
    guard bytes.count >= 11 else { return }
    let kind = bytes[0], parameter = Int(bytes[1])
    let delimiterLength = 1 + Int(bytes[2] % 4)
    var seed: UInt64 = 0
    for index in 3..<11 { seed = seed << 8 | UInt64(bytes[index]) }
    let rest = Array(bytes[11...])
    let framing: Framing
    let stream: [UInt8]
    if kind % 2 == 0 {
        framing = lengthPrefixed(maximumPayload: parameter * 97)
        stream = rest
    } else {
        guard rest.count >= delimiterLength else { return }
        let delimiter = Array(rest[0..<delimiterLength])
        framing = delimited(by: delimiter, maximumLength: delimiterLength + parameter * 31)
        stream = Array(rest[delimiterLength...])
    }

    var delivered: [[UInt8]] = []
    let framingError = feedInPieces(stream, seed: seed, through: framing.segmenter, on: loop) { delivered.append($0.array) }
    let expected = framing.reference(stream)
    precondition(delivered == expected.messages, "delivered \(delivered.count) messages, the reference frames \(expected.messages.count)")
    precondition((framingError?.code == .framing) == expected.malformed, "framing error \(String(describing: framingError)), reference says malformed: \(expected.malformed)")
}
