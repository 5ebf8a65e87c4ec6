@testable import Evpl
import FuzzSupport
#if canImport(Glibc)
import Glibc
#endif

// A stream cut into arbitrary pieces and fed to a connection's real
// delivery path (`deliverReceived`) through a ready-made segmenter: the
// messages delivered must be exactly those a whole-stream reference framing
// finds, in order, and a malformed stream must end the connection with a
// framing error, whatever the pieces. Pieces either extend the buffer being
// filled (a socket read) or arrive in buffers of their own (an io_uring
// provided buffer), so messages straddle buffers in every way.
//
// Input: [kind, parameter, delimiter length, 8 bytes of chunking seed,
// delimiter bytes..., stream...].

let loop: EventLoop = {
    var config = EvplConfig()
    config.bufferSize = 4096
    return try! EventLoop(config: config)
}()

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

    var pair: [Int32] = [0, 0]
    guard socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0, &pair) == 0 else { return }
    close(pair[1])
    var delivered: [[UInt8]] = []
    var framingError: EvplError?
    let connection = Connection(loop: loop, fd: pair[0], protocol: .unix, remoteAddress: try! SocketAddress(unixPath: "/fuzz"),
                                state: .connected) { _, event in
        switch event {
        case .received(let message): delivered.append(message.array)
        case .disconnected(let error): framingError = error
        default: break
        }
    }
    connection.token = UInt64.max
    connection.segmenter = framing.segmenter

    var random = seed
    var position = 0
    while position < stream.count && connection.isOpen {
        random = random &* 6364136223846793005 &+ 1442695040888963407
        let piece = min(stream.count - position, 1 + Int(random >> 33) % (1 << Int(random >> 60 & 12)))
        let source = stream[position..<(position + piece)]
        if random & 1 == 0 {
            // Into the buffer being filled, as a socket read.
            var copied = 0
            while copied < piece {
                let space = try! connection.receiveQueue.writableSpace(minimum: 1)
                let length = min(space.count, piece - copied)
                source.dropFirst(copied).prefix(length).withUnsafeBytes { space.baseAddress!.copyMemory(from: $0.baseAddress!, byteCount: length) }
                connection.receiveQueue.commit(length)
                copied += length
            }
        } else {
            // In buffers of its own, as io_uring provided buffers arrive.
            var copied = 0
            while copied < piece {
                var iovec = try! loop.bufferPool.allocate()
                iovec.length = min(iovec.length, piece - copied)
                source.dropFirst(copied).prefix(iovec.length).withUnsafeBytes { iovec.bytes.copyMemory(from: $0) }
                connection.receiveQueue.append(iovec)
                copied += iovec.length
            }
        }
        position += piece
        connection.deliverReceived()
    }
    connection.close()
    // Delivers the queued `disconnected`; the pin keeps the pass from sleeping.
    loop.pin()
    loop.runOnce()
    loop.unpin()

    let expected = framing.reference(stream)
    precondition(delivered == expected.messages, "delivered \(delivered.count) messages, the reference frames \(expected.messages.count)")
    precondition((framingError?.code == .framing) == expected.malformed, "framing error \(String(describing: framingError)), reference says malformed: \(expected.malformed)")
    precondition(loop.bufferPool.buffersInUse == 0, "\(loop.bufferPool.buffersInUse) buffers still in use")
}
