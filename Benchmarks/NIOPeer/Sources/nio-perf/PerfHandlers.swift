import NIOCore
import NIOTLS
import Synchronization

/// The 8-byte words a perf client opens each TCP connection with, as
/// `evpl perf` sends them, so either client can drive either server.
enum PerfHandshake {
    /// "EVPLPING": echo everything that follows.
    static let ping: UInt64 = 0x4556_504C_5049_4E47
    /// "EVPLSTRM": discard everything that follows.
    static let stream: UInt64 = 0x4556_504C_5354_524D
}

extension ChannelHandlerContext {
    /// Writes (without flushing) the 8-byte handshake that opens a connection.
    func writeHandshake(_ word: UInt64) {
        var handshake = channel.allocator.buffer(capacity: 8)
        handshake.writeInteger(word)
        write(NIOAny(handshake), promise: nil)
    }
}

/// Operations and bytes a client has completed, read by the main thread.
final class PerfCounter: Sendable {
    let operations = Atomic<Int>(0)
    let bytes = Atomic<Int>(0)
    /// Set when the run ends: handshake clients stop reconnecting.
    let stopped = Atomic<Bool>(false)

    func add(operations count: Int, bytes size: Int) {
        operations.add(count, ordering: .relaxed)
        bytes.add(size, ordering: .relaxed)
    }
}

/// Server side of a TCP connection: reads the handshake, then echoes
/// (ping-pong) or discards (stream) what follows.
final class PerfServerHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private var header = ByteBuffer()
    private var sink = false
    private var decided = false

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var buffer = unwrapInboundIn(data)
        if !decided {
            let take = min(8 - header.readableBytes, buffer.readableBytes)
            var piece = buffer.readSlice(length: take)!
            header.writeBuffer(&piece)
            guard header.readableBytes == 8 else { return }
            decided = true
            switch header.readInteger(as: UInt64.self) {
            case PerfHandshake.ping: sink = false
            case PerfHandshake.stream: sink = true
            default: context.close(promise: nil); return
            }
        }
        if !sink && buffer.readableBytes > 0 {
            context.write(wrapOutboundOut(buffer), promise: nil)
        }
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        context.flush()
    }
}

/// Server side of UDP ping-pong: every datagram goes back to its sender.
final class DatagramEchoHandler: ChannelInboundHandler {
    typealias InboundIn = AddressedEnvelope<ByteBuffer>
    typealias OutboundOut = AddressedEnvelope<ByteBuffer>

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let envelope = unwrapInboundIn(data)
        context.write(wrapOutboundOut(AddressedEnvelope(remoteAddress: envelope.remoteAddress, data: envelope.data)), promise: nil)
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        context.flush()
    }
}

/// Client side of TCP ping-pong: keeps `depth` requests of `size` bytes in
/// flight and counts each complete echo.
final class PingPongClientHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private let size: Int
    private let depth: Int
    private let counter: PerfCounter
    private var request = ByteBuffer()
    private var pendingBytes = 0

    init(size: Int, depth: Int, counter: PerfCounter) {
        self.size = size
        self.depth = depth
        self.counter = counter
    }

    func channelActive(context: ChannelHandlerContext) {
        request = context.channel.allocator.buffer(repeating: 0x5A, count: size)
        context.writeHandshake(PerfHandshake.ping)
        for _ in 0..<depth { context.write(wrapOutboundOut(request), promise: nil) }
        context.flush()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        pendingBytes += unwrapInboundIn(data).readableBytes
        var completed = 0
        while pendingBytes >= size {
            pendingBytes -= size
            completed += 1
            context.write(wrapOutboundOut(request), promise: nil)
        }
        if completed > 0 { counter.add(operations: completed, bytes: completed * size) }
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        context.flush()
    }
}

/// Client side of UDP ping-pong: `depth` datagrams in flight to `server`.
final class DatagramPingPongClientHandler: ChannelInboundHandler {
    typealias InboundIn = AddressedEnvelope<ByteBuffer>
    typealias OutboundOut = AddressedEnvelope<ByteBuffer>

    private let server: SocketAddress
    private let size: Int
    private let depth: Int
    private let counter: PerfCounter
    private var request = ByteBuffer()

    init(server: SocketAddress, size: Int, depth: Int, counter: PerfCounter) {
        self.server = server
        self.size = size
        self.depth = depth
        self.counter = counter
    }

    func channelActive(context: ChannelHandlerContext) {
        request = context.channel.allocator.buffer(repeating: 0x5A, count: size)
        for _ in 0..<depth { send(context) }
        context.flush()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        counter.add(operations: 1, bytes: size)
        send(context)
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        context.flush()
    }

    private func send(_ context: ChannelHandlerContext) {
        context.write(wrapOutboundOut(AddressedEnvelope(remoteAddress: server, data: request)), promise: nil)
    }
}

/// Client side of a stream: writes one shared `size`-byte buffer (no copy)
/// while the channel is writable and counts what it hands to the kernel.
///
/// Under TLS, NIO-SSL holds writes itself, where the channel's writability
/// cannot see them, so the client starts once the handshake completes and
/// keeps about 1 MiB of writes in flight, writing the next message as each
/// one completes (reaches the kernel), which is also when it counts.
final class StreamClientHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private let size: Int
    private let counter: PerfCounter
    private let usesTLS: Bool
    private var payload = ByteBuffer()

    init(size: Int, counter: PerfCounter, usesTLS: Bool) {
        self.size = size
        self.counter = counter
        self.usesTLS = usesTLS
    }

    func channelActive(context: ChannelHandlerContext) {
        payload = context.channel.allocator.buffer(repeating: 0x5A, count: size)
        context.writeHandshake(PerfHandshake.stream)
        if !usesTLS { fill(context) }
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        if !usesTLS { fill(context) }
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if case .handshakeCompleted = event as? TLSUserEvent {
            for _ in 0..<max(4, (1 << 20) / size) { writeTracked(context) }
            context.flush()
        }
        context.fireUserInboundEventTriggered(event)
    }

    private func fill(_ context: ChannelHandlerContext) {
        while context.channel.isWritable {
            context.write(wrapOutboundOut(payload), promise: nil)
            counter.add(operations: 1, bytes: size)
            context.flush()
        }
    }

    /// Writes one message whose completion counts it and writes the next.
    private func writeTracked(_ context: ChannelHandlerContext) {
        let promise = context.eventLoop.makePromise(of: Void.self)
        context.write(wrapOutboundOut(payload), promise: promise)
        promise.futureResult.assumeIsolated().whenSuccess { [self] in
            counter.add(operations: 1, bytes: size)
            writeTracked(context)
            context.flush()
        }
    }
}
