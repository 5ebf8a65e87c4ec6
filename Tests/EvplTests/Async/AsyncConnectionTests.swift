import Evpl
import Synchronization
import Testing
#if canImport(Glibc)
import Glibc
#endif

@Suite("Async connections")
struct AsyncConnectionTests {
    @Test("hello: an async client and an async server exchange greetings and both see the orderly end", arguments: StreamCase.allCases)
    func hello(_ setting: StreamCase) throws {
        let loop = try makeLoop()
        let listener = try Listener(address: setting.listenAddress(), protocol: setting.evplProtocol)
        defer { listener.close() }
        let address = listener.address
        let evplProtocol = setting.evplProtocol
        try runTasks(on: loop, "hello", [
            {
                let connection = try await acceptOne(from: listener)
                try await connection.executeThenClose { connection in
                    #expect(try await receiveBytes(connection, count: 5) == Array("hello".utf8))
                    try await connection.write(Array("world".utf8))
                    #expect(try await connection.receive() == nil, "the client finished")
                }
            },
            {
                let connection = try await currentLoop().connect(to: address, protocol: evplProtocol)
                try await connection.write(Array("hello".utf8))
                connection.finish()
                #expect(try await receiveBytes(connection, count: 6) == Array("world".utf8))
            },
        ])
        expectNoLeaks(loop)
    }

    @Test("ping-pong: 200 length-prefixed messages of random sizes up to 100 KB echo back intact, in order", arguments: StreamCase.core)
    func pingPong(_ setting: StreamCase) throws {
        let loop = try makeLoop(bufferSize: 16 * 1024)
        let listener = try Listener(address: setting.listenAddress(), protocol: setting.evplProtocol)
        defer { listener.close() }
        let address = listener.address
        let evplProtocol = setting.evplProtocol
        try runTasks(on: loop, "ping-pong", [
            {
                let connection = try await acceptOne(from: listener, segmenter: Segmenters.lengthPrefixed32())
                try await connection.executeThenClose { connection in
                    for try await message in connection.inbound {
                        try await connection.write(message.array)
                    }
                }
            },
            {
                let connection = try await currentLoop().connect(to: address, protocol: evplProtocol, segmenter: Segmenters.lengthPrefixed32())
                var random = SeededRandom(seed: 6)
                for round in 0..<200 {
                    let size = Int(random.next() % 100_000) + 1
                    let payload = patternBytes(from: round * 7, count: size)
                    let length = UInt32(size)
                    try await connection.write([UInt8(length >> 24), UInt8((length >> 16) & 0xFF), UInt8((length >> 8) & 0xFF), UInt8(length & 0xFF)] + payload)
                    let echo = try #require(try await connection.receive())
                    #expect(echo.count == size + 4)
                    #expect(Array(echo.array.dropFirst(4)) == payload, "round \(round)")
                }
                connection.finish()
                #expect(try await connection.receive() == nil)
            },
        ])
        expectNoLeaks(loop)
    }

    @Test("16 MiB in random chunks to a consumer that stalls now and then arrive intact, with the receiver's pool bounded by its window", arguments: StreamCase.core)
    func largeTransferSlowConsumer(_ setting: StreamCase) throws {
        let loop = try makeLoop(bufferSize: 16 * 1024)
        let listener = try Listener(address: setting.listenAddress(), protocol: setting.evplProtocol)
        defer { listener.close() }
        let address = listener.address
        let evplProtocol = setting.evplProtocol
        let total = 16 << 20
        let window = 64 * 1024
        let peakHeld = AtomicCounter()
        try runTasks(on: loop, "the large transfer", [
            {
                let connection = try await acceptOne(from: listener, window: window)
                let loop = try currentLoop()
                var offset = 0
                var stalls = 0
                while let chunk = try await connection.receive() {
                    var mismatch: Int?
                    var position = offset
                    chunk.forEachSegment { piece in
                        if mismatch == nil, let bad = patternMismatch(in: piece, at: position) { mismatch = bad }
                        position += piece.count
                    }
                    #expect(mismatch == nil, "at \(String(describing: mismatch))")
                    offset = position
                    let pool = connection.connection.loop.bufferPool
                    peakHeld.store(max(peakHeld.value, pool.buffersInUse - pool.buffersLentToKernel))
                    if offset / (1 << 20) > stalls {
                        stalls += 1
                        try await loop.sleep(for: .milliseconds(2))
                    }
                }
                #expect(offset == total)
            },
            {
                let connection = try await currentLoop().connect(to: address, protocol: evplProtocol)
                var random = SeededRandom(seed: 11)
                var offset = 0
                while offset < total {
                    let size = min(total - offset, Int(random.next() % (256 * 1024)) + 1)
                    try await connection.write(patternBytes(from: offset, count: size))
                    offset += size
                }
                connection.finish()
                #expect(try await connection.receive() == nil)
            },
        ])
        // Both ends share the loop's pool: the sender's queue (up to the high
        // watermark) plus the receiver's window, not the 16 MiB sent. Buffers
        // lent to the kernel for io_uring receives are a fixed ring, not
        // counted; but once the window is full, receives the kernel completes
        // before it sees the cancel still arrive, at most a ring's worth.
        let ring = setting.backend == .ioUring ? EvplConfig().ioUringBufferRingEntries : 0
        let bound = (EvplConfig().sendHighWatermark + window) / (16 * 1024) + 64 + ring
        #expect(peakHeld.value <= bound, "peak \(peakHeld.value) buffers of 16 KiB")
        expectNoLeaks(loop)
    }

    @Test("half-close: the server reads to the client's end of stream, then still replies, and the client reads the reply", arguments: StreamCase.allCases)
    func halfClose(_ setting: StreamCase) throws {
        let loop = try makeLoop()
        let listener = try Listener(address: setting.listenAddress(), protocol: setting.evplProtocol)
        defer { listener.close() }
        let address = listener.address
        let evplProtocol = setting.evplProtocol
        let request = patternBytes(from: 0, count: 300_000)
        try runTasks(on: loop, "the half-close", [
            {
                let connection = try await acceptOne(from: listener)
                try await connection.executeThenClose { connection in
                    var received = 0
                    while let chunk = try await connection.receive() { received += chunk.count }
                    #expect(received == request.count)
                    // The peer has finished: replying still works.
                    try await connection.write(Array("got \(received)".utf8))
                }
            },
            {
                let connection = try await currentLoop().connect(to: address, protocol: evplProtocol)
                try await connection.write(request)
                connection.finish()
                let reply = try await receiveBytes(connection, count: .max)
                #expect(String(decoding: reply, as: UTF8.self) == "got \(request.count)")
            },
        ])
        expectNoLeaks(loop)
    }

    @Test("a TCP peer reset ends the inbound sequence with .connectionReset, never a clean end; writes then throw it too",
          arguments: StreamCase.backends.map { StreamCase(kind: .tcp4, backend: $0) })
    func peerReset(_ setting: StreamCase) throws {
        let loop = try makeLoop()
        let listener = try Listener(address: setting.listenAddress(), protocol: setting.evplProtocol)
        defer { listener.close() }
        let sent = patternBytes(from: 0, count: 10_000)
        try runTasks(on: loop, "the reset", [
            {
                let connection = try await acceptOne(from: listener)
                var received: [UInt8] = []
                do throws(EvplError) {
                    while let chunk = try await connection.receive() { received += chunk.array }
                    Issue.record("the reset ended the stream cleanly after \(received.count) bytes")
                } catch {
                    #expect(error.code == .connectionReset, "\(error)")
                }
                #expect(Array(sent.prefix(received.count)) == received)
                await #expect(throws: EvplError.self) { try await connection.write([1]) }
            },
            {
                let fd = rawConnect(to: listener.address)
                try #require(fd >= 0)
                #expect(rawWriteAll(fd, sent))
                try await currentLoop().sleep(for: .milliseconds(20))
                var linger = Glibc.linger(l_onoff: 1, l_linger: 0)
                setsockopt(fd, SOL_SOCKET, SO_LINGER, &linger, socklen_t(MemoryLayout<Glibc.linger>.size))
                close(fd)
            },
        ])
        expectNoLeaks(loop)
    }

    @Test("a stream that ends inside a length-prefixed message throws .framing after the whole messages before it", arguments: StreamCase.kernelCore)
    func truncatedMessage(_ setting: StreamCase) throws {
        let loop = try makeLoop()
        let listener = try Listener(address: setting.listenAddress(), protocol: setting.evplProtocol)
        defer { listener.close() }
        try runTasks(on: loop, "the truncated stream", [
            {
                let connection = try await acceptOne(from: listener, segmenter: Segmenters.lengthPrefixed32())
                var messages = 0
                do throws(EvplError) {
                    while try await connection.receive() != nil { messages += 1 }
                    Issue.record("a truncated message ended the stream cleanly")
                } catch {
                    #expect(error.code == .framing)
                }
                #expect(messages == 3)
            },
            {
                let fd = rawConnect(to: listener.address)
                try #require(fd >= 0)
                let whole: [UInt8] = [0, 0, 0, 2, 7, 7]
                #expect(rawWriteAll(fd, whole + whole + whole + [0, 0, 0, 9, 1, 2]))
                shutdown(fd, Int32(SHUT_WR))
                try await currentLoop().sleep(for: .milliseconds(50))
                close(fd)
            },
        ])
        expectNoLeaks(loop)
    }

    @Test("a task cancelled while it awaits a receive ends within one iteration with .cancelled; the connection still works", arguments: LoopWait.usable)
    func cancelledReceive(_ wait: LoopWait) throws {
        let loop = try makeLoop(waitingIn: wait)
        let setting = StreamCase(kind: .tcp4, backend: wait == .ioUring ? .ioUring : .socket)
        let listener = try Listener(address: setting.listenAddress(), protocol: setting.evplProtocol)
        defer { listener.close() }
        let address = listener.address
        let evplProtocol = setting.evplProtocol
        let endedIn = Atomic<UInt64>(0)
        let outcome = Mutex<EvplError.Code?>(nil)
        let server = Task(executorPreference: loop.executor) { @Sendable () async throws -> Void in
            let connection = try await acceptOne(from: listener)
            do throws(EvplError) {
                _ = try await connection.receive()
            } catch {
                outcome.withLock { $0 = error.code }
            }
            endedIn.store(EventLoop.current!.statistics.iterations, ordering: .relaxed)
            // A cancelled receive leaves the connection usable.
            try connection.connection.send([42])
        }
        let reply = Mutex<[UInt8]?>(nil)
        Task(executorPreference: loop.executor) { @Sendable in
            let connection = try await currentLoop().connect(to: address, protocol: evplProtocol)
            let bytes = try await receiveBytes(connection, count: 1)
            reply.withLock { $0 = bytes }
        }
        var cancelledIn: UInt64 = 0
        try loop.addOneShotTimer(after: .milliseconds(20)) { _ in
            cancelledIn = loop.statistics.iterations
            server.cancel()
        }
        try spin(loop, seconds: 10, "the cancelled receive") { endedIn.load(ordering: .relaxed) != 0 }
        #expect(outcome.withLock { $0 } == .cancelled)
        #expect(endedIn.load(ordering: .relaxed) == cancelledIn)
        try spin(loop, seconds: 10, "the reply") { reply.withLock { $0 != nil } }
        #expect(reply.withLock { $0 } == [42])
        expectNoLeaks(loop)
    }

    @Test("closing a connection whose write is suspended (a peer that never reads) ends the write with .aborted", arguments: StreamCase.core)
    func closeWhileWriteSuspended(_ setting: StreamCase) throws {
        let loop = try makeLoop { $0.sendHighWatermark = 256 * 1024; $0.sendLowWatermark = 64 * 1024 }
        let listener = try Listener(address: setting.listenAddress(), protocol: setting.evplProtocol)
        defer { listener.close() }
        let address = listener.address
        let evplProtocol = setting.evplProtocol
        let outcome = Mutex<EvplError.Code?>(nil)
        let suspendedWrites = AtomicCounter()
        // The peer accepts (attached before the writer connects) but never reads.
        let incoming = Mutex<Bool>(false)
        Task(executorPreference: loop.executor) { @Sendable in
            let connection = try await acceptOne(from: listener)
            // Never receives: past its window the connection stops reading.
            while outcome.withLock({ $0 == nil }) { try await currentLoop().sleep(for: .milliseconds(5)) }
            withExtendedLifetime(connection) {}
            incoming.withLock { $0 = true }
        }
        Task(executorPreference: loop.executor) { @Sendable () async throws -> Void in
            let connection = try await currentLoop().connect(to: address, protocol: evplProtocol)
            let loop = try currentLoop()
            let chunk = [UInt8](repeating: 7, count: 64 * 1024)
            // Once a write has suspended, a timer closes the connection under it.
            var closer: EvplTimer?
            do throws(EvplError) {
                while true {
                    let before = loop.statistics.iterations
                    try await connection.write(chunk)
                    if loop.statistics.iterations != before {
                        suspendedWrites.increment()
                        if closer == nil {
                            closer = try loop.addOneShotTimer(after: .milliseconds(10)) { _ in connection.close() }
                        }
                    }
                }
            } catch {
                outcome.withLock { $0 = error.code }
            }
        }
        try spin(loop, seconds: 30, "the aborted write") { outcome.withLock { $0 != nil } }
        #expect(outcome.withLock { $0 } == .aborted)
        #expect(suspendedWrites.value >= 1)
        try spin(loop, seconds: 10, "the reader to finish") { incoming.withLock { $0 } }
        expectNoLeaks(loop)
    }

    @Test("errors are typed: a refused connect, a segmenter that rejects the stream or a zero length, writes after finish or close", arguments: StreamCase.backends)
    func errorPaths(backend: EvplProtocol.Backend) throws {
        let loop = try makeLoop()
        let evplProtocol = EvplProtocol(.tcp, backend: backend)
        let listener = try Listener(address: SocketAddress(host: "127.0.0.1", port: 0), protocol: evplProtocol)
        defer { listener.close() }
        let (closedFD, closedAddress) = try rawListen(SocketAddress(host: "127.0.0.1", port: 0))
        close(closedFD)
        let zeroLength: @Sendable () -> Segmenter = { { _ in .message(length: 0) } }
        try runTasks(on: loop, "the failures", [
            {
                let loop = try currentLoop()
                do throws(EvplError) {
                    _ = try await loop.connect(to: closedAddress, protocol: evplProtocol)
                    Issue.record("a connect to a closed port succeeded")
                } catch {
                    #expect(error.code == .connectionRefused, "\(error)")
                }
                // A line longer than the segmenter allows, then a zero-length message.
                for segmenter in [Segmenters.delimited(by: [10], maximumLength: 16), zeroLength()] {
                    let incoming = loop.connections(from: listener, segmenter: segmenter)
                    let fd = rawConnect(to: listener.address)
                    try #require(fd >= 0)
                    defer { close(fd) }
                    #expect(rawWriteAll(fd, [UInt8](repeating: 65, count: 100)))
                    let connection = try #require(try await incoming.accept())
                    incoming.stop()
                    await #expect(throws: EvplError.self) { _ = try await connection.receive() }
                    do throws(EvplError) {
                        #expect(try await connection.receive() == nil, "after its error the sequence is over")
                    } catch {
                        Issue.record("the inbound side had ended already: \(error)")
                    }
                }
                // Writes on a finished connection, and on a closed one.
                let incoming = loop.connections(from: listener, segmenter: Segmenters.fixedLength(4))
                let fd = rawConnect(to: listener.address)
                try #require(fd >= 0)
                defer { close(fd) }
                #expect(rawWriteAll(fd, [1, 2, 3, 4]))
                let connection = try #require(try await incoming.accept())
                incoming.stop()
                let message = try #require(try await connection.receive())
                connection.finish()
                for write in [{ try await connection.write(message) }, { try await connection.write(copying: message) }] as [() async throws -> Void] {
                    await #expect(throws: EvplError.self) { try await write() }
                }
                connection.close()
                var iovec = try loop.bufferPool.allocate()
                iovec.length = 4
                let inUse = loop.bufferPool.buffersInUse
                do throws(EvplError) {
                    try await connection.write(taking: [iovec])
                    Issue.record("a write on a closed connection succeeded")
                } catch {
                    #expect(error.code == .aborted)
                }
                #expect(loop.bufferPool.buffersInUse == inUse - 1, "the refused IOVec was released")
            },
        ])
        expectNoLeaks(loop)
    }
}
