@testable import Evpl
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
        // One counter per loop: a Mutex captured by the handler that two loop
        // threads run at once was reported by TSan as a Swift access race.
        let servedBy = [AtomicCounter(), AtomicCounter()]
        let executors = pool.executors
        let server = Task(executorPreference: executors[0]) {
            await listener.serve(on: executors, segmenter: { Segmenters.lengthPrefixed32() }) { connection in
                let index = executors.firstIndex { $0.isLoopThread } ?? -1
                if servedBy.indices.contains(index) { servedBy[index].increment() }
                for try await message in connection.inbound {
                    try await connection.write(message)
                }
            }
        }
        try waitUntil(seconds: 60, "both loops to attach") { listener.attachedLoopCount == 2 }
        let failures = AtomicCounter()
        let clients = (0..<8).map { client in
            TestThread {
                let fd = rawConnect(to: listener.address)
                guard fd >= 0 else { return failures.increment() }
                defer { close(fd) }
                setReceiveTimeout(fd, seconds: 10)
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
        #expect(servedBy.allSatisfy { $0.value > 0 }, "each loop served a connection")
        server.cancel()
        try waitUntil(seconds: 60, "the loops to detach") { listener.attachedLoopCount == 0 }
    }
}

@Suite("ConnectionHandle")
struct ConnectionHandleTests {
    @Test("tasks on other executors write through a connection's handle: each task's messages arrive in its order", arguments: StreamCase.backends)
    func writesFromElsewhere(backend: EvplProtocol.Backend) async throws {
        let pool = try EventLoopThreadPool<Void>(count: 1) { _, _ in }
        defer { pool.stop() }
        let listener = try Listener(address: SocketAddress(host: "127.0.0.1", port: 0), protocol: EvplProtocol(.tcp, backend: backend))
        defer { listener.close() }
        let handleBox = Mutex<ConnectionHandle?>(nil)
        let server = Task(executorPreference: pool.executors[0]) {
            let connection = try await acceptOne(from: listener)
            handleBox.withLock { $0 = connection.handle }
            // The owner keeps the connection until the peer finishes.
            while try await connection.receive() != nil {}
        }
        // Connect only once the loop takes connections from the listener.
        try waitUntil(seconds: 60, "the loop to attach") { listener.attachedLoopCount == 1 }
        let fd = rawConnect(to: listener.address)
        try #require(fd >= 0)
        defer { close(fd) }
        let writer = try waitForValue(handleBox, "the connection's handle")
        #expect(!writer.executor.isLoopThread)
        let writers = 4
        let perWriter = 50
        try await withThrowingTaskGroup(of: Void.self) { group in
            for task in 0..<writers {
                group.addTask {
                    for index in 0..<perWriter { try await writer.write([UInt8(task), UInt8(index)] + [UInt8](repeating: 0xEE, count: 200)) }
                }
            }
            try await group.waitForAll()
        }
        let received = readExactly(fd, writers * perWriter * 202)
        try #require(received.count == writers * perWriter * 202)
        var next = [Int](repeating: 0, count: writers)
        for message in stride(from: 0, to: received.count, by: 202) {
            let task = Int(received[message])
            #expect(Int(received[message + 1]) == next[task], "writer \(task) out of order")
            next[task] += 1
        }
        #expect(next == [Int](repeating: perWriter, count: writers))
        await writer.finish()
        #expect(readExactly(fd, 1).isEmpty, "the handle's finish ends the stream")
        shutdown(fd, Int32(SHUT_WR))
        _ = await server.result
        // Once the owner has let the connection go, the handle says so.
        await #expect(throws: EvplError.self) { try await writer.write([1]) }
    }
}

@Suite("Async pool shutdown")
struct AsyncPoolShutdownTests {
    @Test("await pool.gracefulShutdown: served connections get their replies, then the end of stream; their tasks end; the report is clean")
    func gracefulFromATask() async throws {
        let pool = try EventLoopThreadPool<Void>(count: 2) { _, _ in }
        let listener = try Listener(address: SocketAddress(host: "127.0.0.1", port: 0))
        let handlersEnded = AtomicCounter()
        let executors = pool.executors
        let serving = Task(executorPreference: executors[0]) {
            await listener.serve(on: executors) { connection in
                defer { handlersEnded.increment() }
                for try await message in connection.inbound { try await connection.write(message) }
            }
        }
        try waitUntil(seconds: 60, "both loops to attach") { listener.attachedLoopCount == 2 }
        let clients = (0..<4).map { _ in rawConnect(to: listener.address) }
        for fd in clients {
            try #require(fd >= 0)
            #expect(rawWriteAll(fd, Array("ping".utf8)))
            #expect(readExactly(fd, 4) == Array("ping".utf8))
        }
        // Each client closes once the server has finished its side.
        let sawEnd = AtomicCounter()
        let lastEnd = Atomic<UInt64>(0)
        let readers = clients.map { fd in
            TestThread {
                if readExactly(fd, 1).isEmpty { sawEnd.increment() }
                lastEnd.max(MonotonicClock.nanoseconds(), ordering: .relaxed)
                close(fd)
            }
        }
        serving.cancel()
        listener.close()
        let start = MonotonicClock.nanoseconds()
        let report = await pool.gracefulShutdown(timeout: .seconds(10))
        for reader in readers { reader.join() }
        // Timed by the clients: this task may wait for a free thread to resume.
        let elapsed = lastEnd.load(ordering: .relaxed) - start
        #expect(sawEnd.value == 4)
        #expect(report.finished == 4 && report.isClean, "\(report)")
        #expect(elapsed < 5_000_000_000, "took \(elapsed) ns: the shutdown waited for its deadline")
        #expect(handlersEnded.value == 4)
    }
}

@Suite("Async messages and ends")
struct AsyncMessageBoundsTests {
    @Test("a message larger than the receive window is delivered whole (the window grows to it), on the README's default serve",
          arguments: StreamCase.backends)
    func messageLargerThanTheWindow(backend: EvplProtocol.Backend) throws {
        let pool = try EventLoopThreadPool<Void>(count: 1) { _, _ in }
        defer { pool.stop() }
        let listener = try Listener(address: SocketAddress(host: "127.0.0.1", port: 0), protocol: EvplProtocol(.tcp, backend: backend))
        defer { listener.close() }
        let executors = pool.executors
        let server = Task(executorPreference: executors[0]) {
            await listener.serve(on: executors, segmenter: { Segmenters.lengthPrefixed32() }) { connection in
                for try await message in connection.inbound { try await connection.write(message) }
            }
        }
        defer { server.cancel() }
        try waitUntil(seconds: 60, "the loop to attach") { listener.attachedLoopCount == 1 }
        let outcome = Mutex<String?>(nil)
        let address = listener.address
        let client = TestThread {
            let fd = rawConnect(to: address)
            defer { close(fd) }
            setReceiveTimeout(fd, seconds: 20)
            // Just over the window, several windows, then a small one after them.
            for (index, size) in [AsyncConnection.defaultWindow + 4, 300_000, 3 << 20, 100].enumerated() {
                let message = HostilePeerTests.frame(patternBytes(from: index, count: size))
                let reader = TestThread {
                    let echoed = readExactly(fd, message.count)
                    if echoed != message { outcome.withLock { $0 = "message \(index) of \(size) bytes: \(echoed.count) bytes came back" } }
                }
                _ = rawWriteAll(fd, message)
                reader.join()
                if outcome.withLock({ $0 }) != nil { return }
            }
            outcome.withLock { $0 = "ok" }
        }
        client.join()
        #expect(outcome.withLock { $0 } == "ok")
    }

    struct BrokenHandler: Error {}

    @Test("a handler that throws its own error is reported on standard error by default, one line a second at most with the count of the rest; a peer's reset is not")
    func handlerFailuresAreVisible() throws {
        let pool = try EventLoopThreadPool<Void>(count: 1) { _, _ in }
        defer { pool.stop() }
        let listener = try Listener(address: SocketAddress(inProcessName: "serve-failures-\(UniqueName.next())"), protocol: EvplProtocol(.inproc))
        defer { listener.close() }
        let executors = pool.executors
        let server = Task(executorPreference: executors[0]) {
            await listener.serve(on: executors) { connection in
                guard let first = try await connection.receive() else { return }
                if first[0] == 0x21 { throw BrokenHandler() }
                _ = try await connection.receive()  // the client's reset ends this one
            }
        }
        defer { server.cancel() }
        try waitUntil(seconds: 60, "the loop to attach") { listener.attachedLoopCount == 1 }

        // The lines go to a file of this test's, not the process's standard
        // error: a report of any other test stays where it belongs.
        let captured = try StandardErrorCapture()
        HandlerFailures.standardErrorDescriptor.store(captured.descriptor, ordering: .relaxed)
        defer { HandlerFailures.standardErrorDescriptor.store(STDERR_FILENO, ordering: .relaxed) }
        let loop = try makeLoop()
        var ended = 0
        func connectAndSend(_ byte: UInt8, abort: Bool = false) throws {
            _ = try loop.connect(to: listener.address, protocol: EvplProtocol(.inproc)) { connection, event in
                switch event {
                case .connected:
                    try? connection.send([byte])
                    if abort { _ = try? loop.addOneShotTimer(after: .milliseconds(20)) { _ in connection.close() } }
                case .disconnected: ended += 1
                default: break
                }
            }
        }
        try connectAndSend(0x00, abort: true)
        for _ in 0..<3 { try connectAndSend(0x21) }
        try spin(loop, "four connections to end") { ended == 4 }
        try runLoop(loop, forMilliseconds: 1100)
        try connectAndSend(0x21)
        try spin(loop, "the fifth to end") { ended == 5 }
        try runLoop(loop, forMilliseconds: 50)
        let lines = captured.finish().split(separator: "\n").filter { $0.contains("BrokenHandler") }
        #expect(lines.count == 2, "\(lines)")
        #expect(lines.first?.hasPrefix("evpl: the connection handler for inproc:") == true, "\(lines)")
        #expect(lines.last?.contains("(and 2 more since the last report)") == true, "\(lines)")
        let resets = captured.text.split(separator: "\n").filter { $0.contains("the connection handler for") && $0.contains("connectionReset") }
        #expect(resets.isEmpty, "a reset is the peer's doing: \(resets)")
        expectNoLeaks(loop)
    }

    @Test("a graceful shutdown before the peer's end is not the peer's end: receive() throws .shutdown after the bytes that came, never nil",
          arguments: StreamCase.backends)
    func shutdownIsNotEndOfStream(backend: EvplProtocol.Backend) throws {
        let pool = try EventLoopThreadPool<Void>(count: 1) { _, _ in }
        let listener = try Listener(address: SocketAddress(host: "127.0.0.1", port: 0), protocol: EvplProtocol(.tcp, backend: backend))
        let ending = Mutex<String?>(nil)
        let received = Atomic<Int>(0)
        let executors = pool.executors
        let server = Task(executorPreference: executors[0]) {
            await listener.serve(on: executors) { connection in
                do throws(EvplError) {
                    while let bytes = try await connection.receive() { received.add(bytes.count, ordering: .relaxed) }
                    ending.withLock { $0 = "nil" }
                } catch {
                    ending.withLock { $0 = "\(error.code)" }
                }
            }
        }
        try waitUntil(seconds: 60, "the loop to attach") { listener.attachedLoopCount == 1 }
        let fd = rawConnect(to: listener.address)
        defer { close(fd) }
        #expect(rawWriteAll(fd, patternBytes(from: 0, count: 1000)))
        try waitUntil(seconds: 10, "the bytes to arrive") { received.load(ordering: .relaxed) == 1000 }
        server.cancel()
        listener.close()
        let report = pool.shutdownGracefully(timeout: .milliseconds(300))
        try waitUntil(seconds: 10, "the handler to end") { ending.withLock { $0 } != nil }
        #expect(ending.withLock { $0 } == "shutdown")
        #expect(report.aborted == 0, "\(report)")
    }
}
