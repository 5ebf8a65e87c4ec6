import Evpl
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// Counts and checks a raw stream of pattern bytes and what was pending when it ended.
private final class PatternSink {
    var connected = 0
    var received = 0
    var firstMismatch: Int?
    var disconnects = 0
    var disconnectError: EvplError?
    var receivedAtDisconnect = -1
    var eventsAfterDisconnect = 0

    func handle(_ connection: Connection, _ event: ConnectionEvent) {
        if disconnects > 0 { eventsAfterDisconnect += 1 }
        switch event {
        case .connected:
            connected += 1
        case .received(let bytes):
            bytes.forEachSegment { piece in
                if firstMismatch == nil, let index = patternMismatch(in: piece, at: received) {
                    firstMismatch = received + index
                }
                received += piece.count
            }
        case .disconnected(let error):
            disconnects += 1
            disconnectError = error
            receivedAtDisconnect = received
        default:
            break
        }
    }
}

@Suite("finish()")
struct FinishTests {
    @Test("bytes queued just before finish() all arrive, in order, before the peer's clean disconnect",
          arguments: StreamCase.core, [1, 100, 8192, 131_072, 8 << 20])
    func finishDeliversEverything(_ streamCase: StreamCase, count: Int) throws {
        let loop = try makeLoop()
        let listener = try Listener(address: streamCase.listenAddress(), protocol: streamCase.evplProtocol)
        let server = PatternSink()
        loop.attach(to: listener) { $0.handler = server.handle }

        let scratch = UnsafeMutableRawBufferPointer.allocate(byteCount: 1 << 20, alignment: 16)
        defer { scratch.deallocate() }
        var queued = 0
        var sendError: EvplError?
        let client = EventLog()
        _ = try loop.connect(to: listener.address, protocol: streamCase.evplProtocol) { connection, event in
            client.handle(connection, event)
            guard case .connected = event else { return }
            while queued < count {
                let piece = UnsafeMutableRawBufferPointer(rebasing: scratch[0..<min(1 << 20, count - queued)])
                fillPattern(piece, from: queued)
                do throws(EvplError) { try connection.send(copying: UnsafeRawBufferPointer(piece)) } catch {
                    sendError = error
                    break
                }
                queued += piece.count
            }
            connection.finish()
        }

        try spin(loop, seconds: 30, "server and client disconnects") { server.disconnects >= 1 && client.disconnected >= 1 }
        for _ in 0..<10 { loop.runOnceWithoutBlocking() }
        #expect(sendError == nil, "\(String(describing: sendError))")
        #expect(queued == count)
        #expect(server.firstMismatch == nil, "first wrong byte at offset \(server.firstMismatch ?? -1)")
        #expect(server.receivedAtDisconnect == count, "server had \(server.receivedAtDisconnect) of \(count) bytes at its disconnect")
        #expect(server.connected == 1 && server.disconnects == 1 && server.eventsAfterDisconnect == 0)
        #expect(server.disconnectError == nil, "\(String(describing: server.disconnectError))")
        #expect(client.connected == 1 && client.disconnected == 1 && client.eventsAfterDisconnect == 0)
        #expect(client.disconnectError == nil, "\(String(describing: client.disconnectError))")
        listener.close()
        expectNoLeaks(loop)
    }

    /// The peer's data and its end of stream are both waiting when the loop
    /// first looks, and there is more data than one read burst (16 reads)
    /// takes. The end of stream must still be noticed.
    @Test("end of stream behind more than one read burst of data is still delivered",
          arguments: StreamCase.kernelCore)
    func endOfStreamAfterLongBacklog(_ streamCase: StreamCase) throws {
        // 4 KiB buffers: one burst of 16 reads takes 64 KiB; send more, not a multiple of 4 KiB.
        let count = 70_000
        let loop = try makeLoop(bufferSize: 4096)
        let listener = try Listener(address: streamCase.listenAddress(), protocol: streamCase.evplProtocol)
        let server = PatternSink()
        loop.attach(to: listener) { $0.handler = server.handle }
        let address = listener.address
        let clientDone = AtomicCounter()
        let clientFailed = AtomicCounter()
        let client = TestThread {
            let fd = rawConnect(to: address)
            if fd < 0 || !rawWriteAll(fd, patternBytes(from: 0, count: count)) { clientFailed.increment() }
            if fd >= 0 { close(fd) }
            clientDone.increment()
        }
        defer { client.join() }
        // Let the whole stream and its end wait in the kernel before the loop runs.
        let waitUntil = MonotonicClock.nanoseconds() + 5_000_000_000
        while clientDone.value == 0 && MonotonicClock.nanoseconds() < waitUntil { usleep(1000) }
        #expect(clientDone.value == 1, "the client could not write everything before the server read")

        // On timeout, fall through: the expectations below say what did arrive.
        try? spin(loop, seconds: 5, "the server's disconnect") { server.disconnects >= 1 }
        for _ in 0..<10 { loop.runOnceWithoutBlocking() }
        #expect(clientFailed.value == 0)
        #expect(server.connected == 1)
        #expect(server.firstMismatch == nil)
        #expect(server.received == count)
        #expect(server.disconnects == 1, "no disconnect after all \(server.received) bytes arrived: the end of stream was lost")
        #expect(server.receivedAtDisconnect == count)
        #expect(server.disconnectError == nil, "\(String(describing: server.disconnectError))")
        listener.close()
        expectNoLeaks(loop)
    }

    /// A server that answers and closes at once: by the time the client loop
    /// handles its connect completing, the reply and the end of stream are
    /// both already there.
    @Test("a reply and end of stream that arrive before the connect is processed are both delivered",
          arguments: StreamCase.kernelCore)
    func endOfStreamBeforeConnectProcessed(_ streamCase: StreamCase) throws {
        let (listenFD, bound) = try rawListen(streamCase.listenAddress())
        defer {
            close(listenFD)
            if bound.isUnix { unlink(bound.description) }
        }
        let reply = Array("hello".utf8)
        let serverFailed = AtomicCounter()
        let server = TestThread {
            let fd = accept(listenFD, nil, nil)
            guard fd >= 0 else {
                serverFailed.increment()
                return
            }
            if !rawWriteAll(fd, reply) { serverFailed.increment() }
            close(fd)
        }
        defer { server.join() }

        let loop = try makeLoop()
        let client = EventLog()
        _ = try loop.connect(to: bound, protocol: streamCase.evplProtocol) { client.handle($0, $1) }
        // The server accepts, replies and closes before the client loop runs at all.
        server.join()
        usleep(20_000)
        // On timeout, fall through: the expectations below say what did arrive.
        try? spin(loop, seconds: 5, "the client's disconnect") { client.disconnected >= 1 }
        for _ in 0..<10 { loop.runOnceWithoutBlocking() }
        #expect(serverFailed.value == 0)
        #expect(client.connected == 1)
        #expect(client.received == reply)
        #expect(client.disconnected == 1, "no disconnect after the reply arrived: the end of stream was lost")
        #expect(client.disconnectError == nil, "\(String(describing: client.disconnectError))")
        expectNoLeaks(loop)
    }
}
