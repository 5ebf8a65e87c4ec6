@testable import Evpl
#if canImport(Glibc)
import Glibc
#endif

/// Feeds `stream` to a real connection's delivery path (`deliverReceived`)
/// through `segmenter`, cut into pieces that `seed` picks, and returns the
/// error the connection ended with, if any. `onMessage` sees each message
/// while it is valid. Pieces either extend the buffer being filled (a socket
/// read) or arrive in buffers of their own (an io_uring provided buffer),
/// so messages straddle buffers in every way.
public func feedInPieces(
    _ stream: [UInt8],
    seed: UInt64,
    through segmenter: @escaping Segmenter,
    on loop: EventLoop,
    onMessage: @escaping (ReceivedBytes) -> Void
) -> EvplError? {
    var pair: [Int32] = [0, 0]
    precondition(socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0, &pair) == 0, "socketpair: errno \(errno)")
    close(pair[1])
    var endedWith: EvplError?
    let connection = Connection(loop: loop, fd: pair[0], protocol: .unix, remoteAddress: try! SocketAddress(unixPath: "/fuzz"),
                                state: .connected) { _, event in
        switch event {
        case .received(let message): onMessage(message)
        case .disconnected(let error): endedWith = error
        default: break
        }
    }
    connection.token = UInt64.max
    connection.segmenter = segmenter

    var random = seed
    var position = 0
    while position < stream.count && connection.isOpen {
        random = random &* 6364136223846793005 &+ 1442695040888963407
        let piece = min(stream.count - position, 1 + Int(random >> 33) % (1 << Int(random >> 60 & 12)))
        let source = stream[position..<(position + piece)]
        var copied = 0
        while copied < piece {
            if random & 1 == 0 {
                let space = try! connection.receiveQueue.writableSpace(minimum: 1)
                let length = min(space.count, piece - copied)
                source.dropFirst(copied).prefix(length).withUnsafeBytes { space.baseAddress!.copyMemory(from: $0.baseAddress!, byteCount: length) }
                connection.receiveQueue.commit(length)
                copied += length
            } else {
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
    precondition(loop.bufferPool.buffersInUse == 0, "\(loop.bufferPool.buffersInUse) buffers still in use")
    return endedWith
}

/// A loop with small (4 KiB) buffers, so that messages straddle them.
public func smallBufferLoop() -> EventLoop {
    var config = EvplConfig()
    config.bufferSize = 4096
    return try! EventLoop(config: config)
}
