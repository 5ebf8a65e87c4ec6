import Evpl
import Testing

/// The README's API example, kept compiling and working.
@Suite("README example")
struct ReadmeExampleTests {
    @Test("length-prefixed echo through run() and stop()")
    func readmeExample() throws {
        let loop = try EventLoop()
        let listener = try Listener(address: SocketAddress(host: "127.0.0.1", port: 0), protocol: .tcp)
        loop.attach(to: listener) { connection in
            connection.segmenter = Segmenters.lengthPrefixed32()
            connection.handler = { connection, event in
                if case .received(let message) = event {
                    message.forEachSegment { try? connection.send(copying: $0) }
                }
            }
        }
        var replyBytes: [UInt8] = []
        var disconnectError: EvplError?
        var disconnected = false
        _ = try loop.connect(to: listener.address, protocol: .tcp, segmenter: Segmenters.lengthPrefixed32()) { connection, event in
            switch event {
            case .connected: try? connection.send([0, 0, 0, 5] + Array("hello".utf8))
            case .received(let reply): replyBytes = reply.array; connection.finish()
            case .disconnected(let error): disconnectError = error; disconnected = true; loop.stop()
            default: break
            }
        }
        let guardTimer = try loop.addOneShotTimer(after: .microseconds(10_000_000)) { _ in loop.stop() }
        loop.run()
        guardTimer.cancel()
        #expect(disconnected)
        #expect(disconnectError == nil)
        #expect(replyBytes == [0, 0, 0, 5] + Array("hello".utf8))
        listener.close()
        expectNoLeaks(loop)
    }

    @Test("the async example: a served echo and a client task, then a graceful shutdown")
    func readmeAsyncExample() async throws {
        let pool = try EventLoopThreadPool<Void>(count: 2) { _, _ in }
        let listener = try Listener(address: SocketAddress(host: "127.0.0.1", port: 0), protocol: .tcp)

        // As in the README, but on one of the loops rather than the global
        // executor, whose threads this test run keeps busy.
        let server = Task.detached(executorPreference: pool.executors[1]) {
            await listener.serve(on: pool.executors, segmenter: { Segmenters.lengthPrefixed32() }) { connection in
                for try await message in connection.inbound {
                    try await connection.write(message)
                }
            }
        }
        try waitUntil(seconds: 60, "the loops to attach") { listener.attachedLoopCount == 2 }

        let reply = try await Task(executorPreference: pool.executors[0]) {
            let connection = try await EventLoop.current!.connect(to: listener.address, segmenter: Segmenters.lengthPrefixed32())
            return try await connection.executeThenClose { connection in
                try await connection.write([0, 0, 0, 5] + Array("hello".utf8))
                return try await EventLoop.withTimeout(.seconds(5)) { try await connection.receive()?.array }
            }
        }.value
        #expect(reply == [0, 0, 0, 5] + Array("hello".utf8))
        server.cancel()
        listener.close()
        let report = await pool.gracefulShutdown(timeout: .seconds(5))
        #expect(report.aborted == 0)
    }
}
