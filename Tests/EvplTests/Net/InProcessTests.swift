@testable import Evpl
import Synchronization
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// In-process streams between loops on different threads: what the
/// conformance harness (both ends on one loop) cannot see.
@Suite("In-process streams")
struct InProcessTests {
    static let inproc = EvplProtocol(.inproc)

    static func name() throws -> SocketAddress {
        try SocketAddress(inProcessName: "inproc-test-\(UniqueName.next())")
    }

    /// Runs `loop` until the peer loops gave back every buffer of its pool
    /// they showed (they do so on their own time), then checks for leaks.
    static func expectEverythingBack(_ loop: EventLoop, sourceLocation: SourceLocation = #_sourceLocation) throws {
        try spin(loop, "the peers to give every buffer back") { loop.bufferPool.buffersLentToLoops == 0 }
        expectNoLeaks(loop, sourceLocation: sourceLocation)
    }

    /// An echo server on a loop thread of its own; `onStop` reports what
    /// its pool still holds once its loop closed everything.
    final class EchoThread: Sendable {
        let listener: Listener
        let pool: EventLoopThreadPool<Void>
        /// Buffers the pool still held at the loop's end, and connections accepted.
        let tally = Locked((buffersLeft: -1, connectionsSeen: 0))

        init(config: EvplConfig = EvplConfig(), pauses: Bool = false) throws {
            let listener = try Listener(address: InProcessTests.name(), protocol: InProcessTests.inproc)
            self.listener = listener
            let tally = tally
            pool = try EventLoopThreadPool(count: 1, config: config) { loop, _ in
                loop.attach(to: listener) { connection in
                    tally.withLock { $0.connectionsSeen += 1 }
                    var received = 0
                    connection.handler = { connection, event in
                        guard case .received(let bytes) = event else { return }
                        // Zero-copy echo: the peer's own buffers go back to it.
                        try? connection.send(taking: bytes.retainedIOVecs())
                        received += bytes.count
                        if pauses && received % 7 == 0 {
                            connection.pauseReceiving()
                            _ = try? loop.addOneShotTimer(after: .microseconds(200)) { _ in connection.resumeReceiving() }
                        }
                    }
                }
            } onStop: { loop, _ in
                for _ in 0..<3 { loop.runOnceWithoutBlocking() }
                tally.withLock { $0.buffersLeft = loop.bufferPool.buffersInUse }
            }
            let deadline = MonotonicClock.nanoseconds() + 10_000_000_000
            while listener.attachedLoopCount == 0 {
                if MonotonicClock.nanoseconds() > deadline { throw TimedOut(what: "the echo loop to attach") }
                usleep(1000)
            }
        }

        func stop() -> Int {
            listener.close()
            pool.stop()
            return tally.withLock { $0.buffersLeft }
        }
    }

    @Test("eight streams echo 2 MiB each in random chunks between two loop threads, zero-copy both ways: every byte in order, and both pools get every buffer back")
    func echoAcrossThreads() throws {
        let server = try EchoThread(pauses: true)
        let loop = try makeLoop(bufferSize: 16 * 1024)
        let total = 2 << 20
        var random = SeededRandom(seed: 42)
        var peers: [(sent: Int, received: Int, mismatch: Int?, connection: Connection?)] = Array(repeating: (0, 0, nil, nil), count: 8)
        let scratch = UnsafeMutableRawBufferPointer.allocate(byteCount: 65536, alignment: 16)
        defer { scratch.deallocate() }
        func pump(_ index: Int) {
            guard let connection = peers[index].connection else { return }
            while peers[index].sent < total && connection.queuedBytes < 256 * 1024 {
                let length = min(random.next(in: 1...65536), total - peers[index].sent)
                let piece = UnsafeMutableRawBufferPointer(rebasing: scratch[0..<length])
                fillPattern(piece, from: peers[index].sent)
                guard (try? connection.send(copying: UnsafeRawBufferPointer(piece))) != nil else { return }
                peers[index].sent += length
            }
        }
        for index in peers.indices {
            let connection = try loop.connect(to: server.listener.address, protocol: Self.inproc) { connection, event in
                switch event {
                case .connected, .writable: pump(index)
                case .received(let bytes):
                    bytes.forEachSegment { piece in
                        if peers[index].mismatch == nil, let at = patternMismatch(in: piece, at: peers[index].received) { peers[index].mismatch = peers[index].received + at }
                        peers[index].received += piece.count
                    }
                    pump(index)
                default: break
                }
            }
            peers[index].connection = connection
        }
        try spin(loop, seconds: 120, "every echo") { peers.allSatisfy { $0.received == total } }
        for peer in peers {
            #expect(peer.mismatch == nil, "wrong byte at \(peer.mismatch ?? -1)")
        }
        #expect(server.tally.withLock { $0.connectionsSeen } == 8)
        for peer in peers { peer.connection?.finish() }
        try spin(loop, "every stream to end") { peers.allSatisfy { $0.connection?.isClosed ?? true } }
        try Self.expectEverythingBack(loop)
        #expect(server.stop() == 0, "the echo loop's pool still holds buffers")
    }

    @Test("bytes a loop sent stay readable after that loop is gone: a slow server takes what waited in the channel from a destroyed client loop, in order, then the reset")
    func bytesOutliveTheSendingLoop() throws {
        let listener = try Listener(address: Self.name(), protocol: Self.inproc)
        defer { listener.close() }
        let outcome = Locked((received: 0, mismatch: Int?.none, end: EvplError??.none))
        let pool = try EventLoopThreadPool<Void>(count: 1) { loop, _ in
            loop.attach(to: listener) { connection in
                connection.handler = { _, event in
                    switch event {
                    case .received(let bytes):
                        bytes.forEachSegment { piece in
                            outcome.withLock { state in
                                if state.mismatch == nil, let at = patternMismatch(in: piece, at: state.received) { state.mismatch = state.received + at }
                                state.received += piece.count
                            }
                        }
                        // A slow reader: the channel stays full behind it.
                        usleep(2000)
                    case .disconnected(let error): outcome.withLock { $0.end = .some(error) }
                    default: break
                    }
                }
            }
        }
        defer { pool.stop() }
        do {
            let loop = try makeLoop(bufferSize: 16 * 1024)
            let client = try loop.connect(to: listener.address, protocol: Self.inproc) { _, _ in }
            let chunk = UnsafeMutableRawBufferPointer.allocate(byteCount: 64 * 1024, alignment: 16)
            defer { chunk.deallocate() }
            var sent = 0
            try spin(loop, "the channel to fill") {
                while client.queuedBytes < 256 * 1024 {
                    fillPattern(chunk, from: sent)
                    guard (try? client.send(copying: UnsafeRawBufferPointer(chunk))) != nil else { break }
                    sent += chunk.count
                }
                return sent >= 4 << 20 || loop.bufferPool.buffersLentToLoops > 32
            }
            // The loop goes with its bytes still in the channel.
        }
        try waitUntil(seconds: 30, "the server's end") { outcome.withLock { $0.end != nil } }
        let final = outcome.withLock { $0 }
        #expect(final.received > 0 && final.mismatch == nil, "\(final.received) bytes, mismatch at \(String(describing: final.mismatch))")
        #expect(final.end??.code == .connectionReset, "\(String(describing: final.end))")
    }

    @Test("a connect to a name nobody listens on ends in one disconnected with .connectionRefused; a name in use cannot be listened on twice, and is free again once closed")
    func refusedAndInUse() throws {
        let loop = try makeLoop()
        var events: [String] = []
        _ = try loop.connect(to: Self.name(), protocol: Self.inproc) { _, event in
            switch event {
            case .connected: events.append("connected")
            case .disconnected(let error): events.append("disconnected \(error?.code == .connectionRefused)")
            default: break
            }
        }
        #expect(events.isEmpty, "events come from the loop, not from connect")
        try spin(loop, "the refusal") { !events.isEmpty }
        #expect(events == ["disconnected true"])

        let address = try Self.name()
        let first = try Listener(address: address, protocol: Self.inproc)
        #expect(throws: EvplError.self) { try Listener(address: address, protocol: Self.inproc) }
        first.close()
        let second = try Listener(address: address, protocol: Self.inproc)
        second.close()
        #expect(throws: EvplError.self) { try Listener(address: address, protocol: EvplProtocol(.inproc, backend: .socket)) }
        #expect(throws: EvplError.self) { try Listener(address: SocketAddress(host: "127.0.0.1", port: 0), protocol: Self.inproc) }
        expectNoLeaks(loop)
    }

    @Test("a stream that connects before any loop attaches waits for one; when the listener closes first, it ends with .connectionReset")
    func backlog() throws {
        let loop = try makeLoop()
        let listener = try Listener(address: Self.name(), protocol: Self.inproc)
        var reply: [UInt8] = []
        var ends: [EvplError?] = []
        let early = try loop.connect(to: listener.address, protocol: Self.inproc) { _, event in
            switch event {
            case .received(let bytes): reply += bytes.array
            case .disconnected(let error): ends.append(error)
            default: break
            }
        }
        try early.send(Array("early".utf8))
        try runLoop(loop, forMilliseconds: 20)
        loop.attach(to: listener) { connection in
            connection.handler = { connection, event in
                if case .received(let bytes) = event { try? connection.send(bytes.array) }
            }
        }
        try spin(loop, "the echo after the attach") { reply.count == 5 }
        loop.detach(from: listener)
        let orphan = try loop.connect(to: listener.address, protocol: Self.inproc) { _, event in
            if case .disconnected(let error) = event { ends.append(error) }
        }
        try runLoop(loop, forMilliseconds: 20)
        #expect(ends.isEmpty && !orphan.isClosed, "a stream waits while no loop is attached")
        listener.close()
        try spin(loop, "the orphan's reset") { !ends.isEmpty }
        #expect(ends.count == 1 && ends[0]?.code == .connectionReset, "\(ends)")
        early.close()
        expectNoLeaks(loop)
    }

    @Test("an abortive close is a reset at the peer; the peer's end of stream after a finish is an orderly inputClosed then disconnected(nil)")
    func resetAndOrderlyEnd() throws {
        let loop = try makeLoop()
        let listener = try Listener(address: Self.name(), protocol: Self.inproc)
        defer { listener.close() }
        var serverEvents: [String] = []
        loop.attach(to: listener) { connection in
            connection.handler = { _, event in
                switch event {
                case .received(let bytes): serverEvents.append("received \(bytes.count)")
                case .inputClosed: serverEvents.append("inputClosed")
                case .disconnected(let error): serverEvents.append("disconnected \(error.map { "\($0.code)" } ?? "nil")")
                default: break
                }
            }
        }
        var clientEnd: EvplError?? = .none
        let client = try loop.connect(to: listener.address, protocol: Self.inproc) { _, event in
            if case .disconnected(let error) = event { clientEnd = .some(error) }
        }
        try client.send([1, 2, 3])
        client.finish()
        try spin(loop, "both ends") { clientEnd != nil && serverEvents.last?.hasPrefix("disconnected") == true }
        #expect(serverEvents == ["received 3", "inputClosed", "disconnected nil"])
        #expect(clientEnd == .some(nil))

        serverEvents = []
        let aborter = try loop.connect(to: listener.address, protocol: Self.inproc) { _, _ in }
        try aborter.send([9])
        try spin(loop, "the byte") { serverEvents == ["received 1"] }
        aborter.close()
        try spin(loop, "the reset") { serverEvents.count == 2 }
        #expect(serverEvents.last == "disconnected connectionReset")
        expectNoLeaks(loop)
    }

    @Test("bytes received in process stay valid after the handler returns while an IOVec is retained; the sender's pool gets its buffer back only at the release")
    func retainedBytesOutliveDelivery() throws {
        let server = try EchoThread()
        let loop = try makeLoop()
        var kept: [IOVec] = []
        let client = try loop.connect(to: server.listener.address, protocol: Self.inproc) { _, event in
            if case .received(let bytes) = event { kept += bytes.retainedIOVecs() }
        }
        let message = Array("kept beyond the callback".utf8)
        try client.send(message)
        try spin(loop, "the echo") { kept.reduce(0) { $0 + $1.length } == message.count }
        try runLoop(loop, forMilliseconds: 20)
        let copied = kept.flatMap { Array(UnsafeRawBufferPointer($0.bytes)) }
        #expect(copied == message)
        #expect(loop.bufferPool.buffersLentToLoops > 0, "the echo shows this loop's own buffer, still lent out")
        for iovec in kept { iovec.release() }
        client.finish()
        try spin(loop, "the stream to end") { client.isClosed }
        try Self.expectEverythingBack(loop)
        #expect(server.stop() == 0)
    }

    @Test("a peer loop that sleeps (no spinning) is woken by the first byte: 200 round trips with the server asleep between each")
    func sleepingPeerIsWoken() throws {
        var config = EvplConfig()
        config.spinNanoseconds = 0
        let server = try EchoThread(config: config)
        let loop = try makeLoop { $0.spinNanoseconds = 0 }
        var echoed = 0
        let client = try loop.connect(to: server.listener.address, protocol: Self.inproc) { connection, event in
            if case .received(let bytes) = event {
                echoed += bytes.count
                try? connection.send([0x42])
            }
        }
        try client.send([0x42])
        let started = MonotonicClock.nanoseconds()
        try spin(loop, seconds: 20, "200 round trips") { echoed >= 200 }
        let perRoundTrip = (MonotonicClock.nanoseconds() - started) / 200
        // A lost wake-up would cost the test's 20 ms watchdog per round trip.
        #expect(perRoundTrip < 10_000_000, "\(perRoundTrip / 1000) µs per round trip")
        client.close()
        try Self.expectEverythingBack(loop)
        _ = server.stop()
    }
}
