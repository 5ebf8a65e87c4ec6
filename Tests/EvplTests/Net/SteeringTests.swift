import Evpl
import Synchronization
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// What the pool threads report, from any thread.
private final class PoolReport: Sendable {
    let accepted: [AtomicCounter]
    let serverConnected = AtomicCounter()
    let serverEchoes = AtomicCounter()
    let serverDisconnects = AtomicCounter()
    /// Callbacks that ran on a thread or loop other than the connection's own.
    let wrongThread = AtomicCounter()
    let eventsAfterDisconnect = AtomicCounter()
    let onStopRuns = AtomicCounter()
    /// onStop calls that got another thread's state, or ran on the wrong thread.
    let onStopMismatches = AtomicCounter()
    let leakedBuffers = AtomicCounter()
    let disconnectsSeenByOnStop = Locked<[Int: Int]>([:])

    init(threads: Int) {
        accepted = (0..<threads).map { _ in AtomicCounter() }
    }
}

/// Lives on one pool thread: made by onStart, handed to onStop.
private final class PoolThreadState {
    let index: Int
    let thread: pthread_t
    let loop: ObjectIdentifier
    var disconnects = 0

    init(index: Int, thread: pthread_t, loop: ObjectIdentifier) {
        self.index = index
        self.thread = thread
        self.loop = loop
    }
}

/// Per-connection record of where the connection belongs.
private final class Assignment {
    let thread: pthread_t
    let loop: ObjectIdentifier
    var disconnected = false
    init(thread: pthread_t, loop: ObjectIdentifier) {
        self.thread = thread
        self.loop = loop
    }
}

@Suite("Steering")
struct SteeringTests {
    @Test("one listener, four pool loops: 100 connections split 25 each; pool.stop() disconnects them all and runs onStop with onStart's state",
          arguments: StreamCase.backends)
    func roundRobinOverPool(backend: EvplProtocol.Backend) throws {
        let tcp = EvplProtocol(.tcp, backend: backend)
        let threads = 4
        let connections = 100
        let listener = try Listener(address: SocketAddress(host: "127.0.0.1", port: 0), protocol: tcp)
        let report = PoolReport(threads: threads)
        var config = EvplConfig()
        config.spinNanoseconds = 50_000
        let pool = try EventLoopThreadPool(
            count: threads,
            config: config,
            onStart: { loop, index in
                let state = PoolThreadState(index: index, thread: pthread_self(), loop: ObjectIdentifier(loop))
                loop.attach(to: listener) { connection in
                    let assignment = Assignment(thread: pthread_self(), loop: ObjectIdentifier(connection.loop))
                    if pthread_equal(assignment.thread, state.thread) == 0 || assignment.loop != state.loop {
                        report.wrongThread.increment()
                    }
                    connection.context = assignment
                    report.accepted[index].increment()
                    connection.handler = { connection, event in
                        if pthread_equal(pthread_self(), assignment.thread) == 0 || ObjectIdentifier(connection.loop) != assignment.loop {
                            report.wrongThread.increment()
                        }
                        if assignment.disconnected { report.eventsAfterDisconnect.increment() }
                        switch event {
                        case .connected:
                            report.serverConnected.increment()
                        case .received(let bytes):
                            bytes.forEachSegment { try? connection.send(copying: $0) }
                            report.serverEchoes.increment()
                        case .disconnected:
                            assignment.disconnected = true
                            state.disconnects += 1
                            report.serverDisconnects.increment()
                        default:
                            break
                        }
                    }
                }
                return state
            },
            onStop: { loop, state in
                report.onStopRuns.increment()
                if pthread_equal(pthread_self(), state.thread) == 0 || ObjectIdentifier(loop) != state.loop {
                    report.onStopMismatches.increment()
                }
                report.disconnectsSeenByOnStop.withLock { $0[state.index] = state.disconnects }
                report.leakedBuffers.add(loop.bufferPool.buffersInUse - loop.bufferPool.buffersLentToKernel)
            }
        )
        defer { pool.stop() }
        #expect(pool.count == threads)
        #expect(listener.attachedLoopCount == threads)

        let loop = try makeLoop()
        let client = EventLog()
        var clientConnections: [Connection] = []
        for _ in 0..<connections {
            clientConnections.append(try loop.connect(to: listener.address, protocol: tcp) { connection, event in
                client.handle(connection, event)
                if case .connected = event { try? connection.send([42]) }
            })
        }
        try spin(loop, seconds: 30, "100 connections echoed on both sides") {
            client.connected == connections && client.received.count == connections
                && report.serverConnected.value == connections
        }
        #expect(report.accepted.map(\.value) == [Int](repeating: connections / threads, count: threads))
        #expect(report.serverEchoes.value == connections)
        #expect(client.disconnected == 0)

        pool.stop()
        #expect(report.serverDisconnects.value == connections)
        #expect(report.onStopRuns.value == threads)
        #expect(report.onStopMismatches.value == 0)
        #expect(report.disconnectsSeenByOnStop.withLock { $0 } == Dictionary(uniqueKeysWithValues: (0..<threads).map { ($0, connections / threads) }))
        #expect(report.wrongThread.value == 0)
        #expect(report.eventsAfterDisconnect.value == 0)
        #expect(report.leakedBuffers.value == 0)
        #expect(listener.attachedLoopCount == 0)

        try spin(loop, seconds: 30, "client disconnects") { client.disconnected == connections }
        #expect(clientConnections.allSatisfy { $0.isClosed })
        listener.close()
        expectNoLeaks(loop)
    }

    /// A server attaches its loops after it listens, and may detach them
    /// all for a while; a client arriving then must wait for a loop, not be
    /// accepted and closed.
    @Test("a client that connects while no loop is attached waits in the backlog and is served once one attaches; closing the listener ends the wait",
          arguments: StreamCase.backends)
    func clientsWaitForALoop(_ backend: EvplProtocol.Backend) throws {
        let listener = try Listener(address: SocketAddress(host: "127.0.0.1", port: 0), protocol: EvplProtocol(.tcp, backend: backend))
        let loop = try makeLoop()
        let echo: (Connection) -> Void = { connection in
            connection.handler = { connection, event in
                guard case .received(let bytes) = event else { return }
                try? connection.send(bytes.array)
            }
        }
        // Returns the echo of `bytes` once the loop has run long enough.
        func echoed(_ fd: Int32, _ bytes: [UInt8]) throws -> Bool {
            var reply: [UInt8] = []
            try spin(loop, seconds: 10, "the echo of \(bytes)") {
                var chunk = [UInt8](repeating: 0, count: 64)
                let count = recv(fd, &chunk, chunk.count, Int32(MSG_DONTWAIT))
                if count > 0 { reply += chunk[0..<count] }
                return reply.count >= bytes.count || count == 0
            }
            return reply == bytes
        }

        let early = rawConnect(to: listener.address)
        try #require(early >= 0)
        defer { close(early) }
        #expect(rawWriteAll(early, [1, 2, 3]))
        usleep(100_000)  // the accept thread has taken it by now
        loop.attach(to: listener, echo)
        #expect(try echoed(early, [1, 2, 3]), "the client that came before any loop")

        loop.detach(from: listener)
        let between = rawConnect(to: listener.address)
        try #require(between >= 0)
        defer { close(between) }
        #expect(rawWriteAll(between, [4, 5]))
        try runLoop(loop, forMilliseconds: 200)
        var peek: UInt8 = 0
        #expect(recv(between, &peek, 1, Int32(MSG_DONTWAIT | MSG_PEEK)) < 0 && errno == EAGAIN, "nothing answers while no loop is attached")
        loop.attach(to: listener, echo)
        #expect(try echoed(between, [4, 5]), "the client that came while every loop was detached")
        #expect(rawWriteAll(early, [6]))
        #expect(try echoed(early, [6]), "the first client, still on its loop")

        loop.detach(from: listener)
        let unserved = rawConnect(to: listener.address)
        try #require(unserved >= 0)
        defer { close(unserved) }
        usleep(100_000)
        listener.close()
        setReceiveTimeout(unserved, seconds: 5)
        var byte: UInt8 = 0
        #expect(read(unserved, &byte, 1) <= 0, "the listener closed: its waiting client is closed, not left hanging")
        expectNoLeaks(loop)
    }
}
