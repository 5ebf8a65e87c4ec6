import Evpl
import EvplServiceLifecycle
import Glibc
import Logging
import ServiceLifecycle
import Testing

@Suite("ServiceLifecycle")
struct ServiceLifecycleTests {
    @Test("a graceful shutdown closes the listener, finishes the connection (its reply, then the end of stream), then stops the loops")
    func gracefulShutdown() async throws {
        let listener = try Listener(address: SocketAddress(host: "127.0.0.1", port: 0))
        let pool = try EventLoopThreadPool(count: 2, config: EvplConfig()) { loop, _ in
            loop.attach(to: listener) { connection in
                connection.handler = { connection, event in
                    if case .received(let bytes) = event { bytes.withContiguousBytes { try? connection.send(copying: $0) } }
                }
            }
        }
        let service = EventLoopPoolService(pool: pool, listeners: [listener], shutdownTimeout: .seconds(5))
        let fd = rawConnect(to: listener.address)
        try #require(fd >= 0)
        #expect(rawWriteAll(fd, [1, 2, 3]) && readExactly(fd, 3) == [1, 2, 3])
        // Sent before the shutdown, answered during it.
        #expect(rawWriteAll(fd, [4, 5]))

        let group = ServiceGroup(services: [service], logger: .evplSilent)
        // The client reads the reply and the end of stream, then closes its
        // own end, which lets the connection finish well before the timeout.
        let client = Task.detached {
            let reply = readExactly(fd, 3)
            close(fd)
            return reply
        }
        try await withThrowingTaskGroup(of: Void.self) { tasks in
            tasks.addTask { try await group.run() }
            try await Task.sleep(for: .milliseconds(100))
            await group.triggerGracefulShutdown()
            try await tasks.waitForAll()
        }
        #expect(await client.value == [4, 5], "the reply, then the end of stream")
        #expect(service.shutdownReport?.finished == 1, "\(String(describing: service.shutdownReport))")
        let late = rawConnect(to: listener.address)
        #expect(late < 0, "the listener still accepts")
        if late >= 0 { close(late) }
    }

    @Test("cancelling the task that runs the service stops the loops at once")
    func cancellation() async throws {
        let pool = try EventLoopThreadPool(count: 1, config: EvplConfig()) { _, _ in () }
        let service = EventLoopPoolService(pool: pool)
        let running = Task { try await service.run() }
        try await Task.sleep(for: .milliseconds(50))
        running.cancel()
        try await running.value
        #expect(service.shutdownReport == ShutdownReport())
    }
}
