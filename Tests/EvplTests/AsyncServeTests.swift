import Evpl
import Synchronization
import Testing
#if canImport(Glibc)
import Glibc
#endif

@Suite("Listener.serve")
struct AsyncServeTests {
    @Test("serve gives each connection a task on the loop that got it: 8 clients echo concurrently; cancelling detaches the loops", arguments: StreamCase.backends)
    func serveEcho(backend: EvplProtocol.Backend) throws {
        let pool = try EventLoopThreadPool<Void>(count: 2) { _, _ in }
        defer { pool.stop() }
        let listener = try Listener(address: SocketAddress(host: "127.0.0.1", port: 0), protocol: EvplProtocol(.tcp, backend: backend))
        defer { listener.close() }
        let loopsServing = Mutex<Set<Int>>([])
        let executors = pool.executors
        let server = Task(executorPreference: executors[0]) {
            await listener.serve(on: executors, segmenter: { Segmenters.lengthPrefixed32() }) { connection in
                let index = executors.firstIndex { $0.isLoopThread } ?? -1
                loopsServing.withLock { _ = $0.insert(index) }
                for try await message in connection.inbound {
                    try await connection.write(message)
                }
            }
        }
        let deadline = MonotonicClock.nanoseconds() + 10_000_000_000
        while listener.attachedLoopCount < 2 && MonotonicClock.nanoseconds() < deadline { usleep(1000) }
        try #require(listener.attachedLoopCount == 2)
        let failures = AtomicCounter()
        let clients = (0..<8).map { client in
            TestThread {
                let fd = rawConnect(to: listener.address)
                guard fd >= 0 else { return failures.increment() }
                defer { close(fd) }
                var timeout = timeval(tv_sec: 10, tv_usec: 0)
                setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
                for round in 0..<50 {
                    let payload = patternBytes(from: client * 1000 + round, count: 1 + (client * 37 + round * 101) % 3000)
                    let length = UInt32(payload.count)
                    let message = [UInt8(length >> 24), UInt8((length >> 16) & 0xFF), UInt8((length >> 8) & 0xFF), UInt8(length & 0xFF)] + payload
                    guard rawWriteAll(fd, message), readExactly(fd, message.count) == message else { return failures.increment() }
                }
            }
        }
        for client in clients { client.join() }
        #expect(failures.value == 0)
        #expect(loopsServing.withLock { $0 } == [0, 1])
        server.cancel()
        while listener.attachedLoopCount > 0 && MonotonicClock.nanoseconds() < deadline + 10_000_000_000 { usleep(1000) }
        #expect(listener.attachedLoopCount == 0)
    }
}
