import NIOCore
import NIOPosix
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

// The same TCP ping-pong through NIOAsyncChannel: the server serves each
// connection in a child task, the client drives each connection from a task,
// as SwiftNIO's async/await documentation shows. The tasks run on the
// global concurrent executor, which is how NIOAsyncChannel is used.

/// Serves perf clients with NIOAsyncChannel until killed.
func serveAsync(_ options: Options, group: MultiThreadedEventLoopGroup) async throws {
    let server = try await ServerBootstrap(group: group)
        .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
        .childChannelOption(.socketOption(.tcp_nodelay), value: 1)
        .bind(host: "127.0.0.1", port: options.port) { channel in
            channel.eventLoop.makeCompletedFuture {
                try NIOAsyncChannel<ByteBuffer, ByteBuffer>(wrappingChannelSynchronously: channel)
            }
        }
    print("listening on 127.0.0.1:\(server.channel.localAddress?.port ?? options.port)")
    fflush(nil)
    try await server.executeThenClose { connections in
        try await withThrowingDiscardingTaskGroup { tasks in
            for try await connection in connections {
                tasks.addTask {
                    try? await connection.executeThenClose { inbound, outbound in
                        var header = ByteBuffer()
                        var decided = false
                        var sink = false
                        for try await var buffer in inbound {
                            if !decided {
                                var piece = buffer.readSlice(length: min(8 - header.readableBytes, buffer.readableBytes))!
                                header.writeBuffer(&piece)
                                guard header.readableBytes == 8 else { continue }
                                decided = true
                                switch header.readInteger(as: UInt64.self) {
                                case PerfHandshake.ping: sink = false
                                case PerfHandshake.stream: sink = true
                                default: return
                                }
                            }
                            if !sink && buffer.readableBytes > 0 { try await outbound.write(buffer) }
                        }
                    }
                }
            }
        }
    }
}

/// Drives ping-pong with NIOAsyncChannel and prints the figures as the
/// callback client does.
func driveAsync(_ options: Options, group: MultiThreadedEventLoopGroup) async throws {
    let counter = PerfCounter()
    let (size, depth) = (options.size, options.depth)
    try await withThrowingTaskGroup(of: Void.self) { tasks in
        for _ in 0..<options.connections {
            tasks.addTask {
                let channel = try await ClientBootstrap(group: group)
                    .channelOption(.socketOption(.tcp_nodelay), value: 1)
                    .connect(host: "127.0.0.1", port: options.port) { channel in
                        channel.eventLoop.makeCompletedFuture {
                            try NIOAsyncChannel<ByteBuffer, ByteBuffer>(wrappingChannelSynchronously: channel)
                        }
                    }
                try await channel.executeThenClose { inbound, outbound in
                    var handshake = ByteBuffer()
                    handshake.writeInteger(PerfHandshake.ping)
                    try await outbound.write(handshake)
                    let request = ByteBuffer(repeating: 0x5A, count: size)
                    for _ in 0..<depth { try await outbound.write(request) }
                    var pending = 0
                    for try await buffer in inbound {
                        pending += buffer.readableBytes
                        var completed = 0
                        while pending >= size {
                            pending -= size
                            completed += 1
                        }
                        guard completed > 0 else { continue }
                        counter.add(operations: completed, bytes: completed * size)
                        try await outbound.write(contentsOf: repeatElement(request, count: completed))
                    }
                }
            }
        }
        // Let the connections open, then measure.
        try await Task.sleep(for: .milliseconds(200))
        let startOperations = counter.operations.load(ordering: .relaxed)
        let startBytes = counter.bytes.load(ordering: .relaxed)
        let start = monotonicSeconds()
        try await Task.sleep(for: .seconds(options.duration))
        let operations = counter.operations.load(ordering: .relaxed) - startOperations
        let bytes = counter.bytes.load(ordering: .relaxed) - startBytes
        let seconds = monotonicSeconds() - start
        print("{\"ops_per_sec\":\(Double(operations) / seconds),\"bytes_per_sec\":\(Double(bytes) / seconds),\"operations\":\(operations),\"seconds\":\(seconds)}")
        fflush(nil)
        tasks.cancelAll()
    }
}
