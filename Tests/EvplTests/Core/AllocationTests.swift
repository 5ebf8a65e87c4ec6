import CAllocationCounter
@testable import Evpl
import EvplTLS
import Synchronization
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// Heap allocations the calling thread makes while `body` runs, counted by
/// the interposed allocator in `CAllocationCounter`.
func countingAllocations(_ body: () throws -> Void) rethrows -> UInt64 {
    cevpl_allocations_begin()
    defer { _ = cevpl_allocations_end() }
    try body()
    return cevpl_allocations_end()
}

/// Runs `loop` until `condition` holds and returns the heap allocations the
/// thread made meanwhile (`spin` would add a timer, which allocates). A
/// watchdog made beforehand wakes a loop that fell asleep for good, so a
/// stall fails the test instead of hanging it.
@discardableResult
func drive(_ loop: EventLoop, seconds: Double = 60, _ what: String, until condition: () -> Bool) throws -> UInt64 {
    let remote = loop.remote
    let watchdog = Watchdog(seconds: seconds) { remote.execute { _ in } }
    defer { watchdog.standDown() }
    let allocations = countingAllocations {
        while !condition() && !watchdog.fired { loop.runOnce() }
    }
    if !condition() { throw TimedOut(what: what) }
    return allocations
}

/// The steady state is malloc-free: the loop thread allocates at most one
/// heap block per hundred operations once connections, buffers and request
/// objects exist. Engine worker threads (psync) are not counted.
@Suite("Allocation-free hot path",
       .enabled(if: cevpl_allocation_counting_available() != 0, "a sanitizer build keeps its own allocator, so nothing counts"))
struct AllocationTests {
    static let rounds = 10_000
    static let warmUpRounds = 1_000
    static let allowedPerOperation = 0.01

    /// Runs the warm-up, then ``rounds`` more operations (as `completed`
    /// counts them), and expects them to allocate at most
    /// ``allowedPerOperation`` heap blocks each.
    static func expectSteadyStateAllocationFree(_ loop: EventLoop, _ what: String, allowing allowed: Double = allowedPerOperation,
                                                completed: () -> Int, sourceLocation: SourceLocation = #_sourceLocation) throws {
        try drive(loop, "warm-up \(what)") { completed() >= warmUpRounds }
        let target = completed() + rounds
        let allocations = try drive(loop, "\(rounds) \(what)") { completed() >= target }
        let perOperation = Double(allocations) / Double(rounds)
        #expect(perOperation <= allowed, "\(allocations) heap allocations in \(rounds) \(what)", sourceLocation: sourceLocation)
    }

    final class Counted {
        var value = 0
    }

    nonisolated(unsafe) static var sink: Counted?

    @Test("the interposed allocator counts Swift allocations on this thread")
    func counterSeesAllocations() {
        let allocations = countingAllocations {
            for _ in 0..<100 { Self.sink = Counted() }
        }
        Self.sink = nil
        #expect(allocations >= 100)
        #expect(countingAllocations {} == 0)
    }

    /// OpenSSL 3.0 allocates small blocks (40 bytes, `CRYPTO_zalloc` inside
    /// `SSL_write`: its record writer's packet bookkeeping) for the records
    /// it writes: 8 per TLS round trip here, none of them swift-evpl's.
    static let openSSLAllocationsPerRoundTrip = 8.0

    @Test("10,000 TCP ping-pong round trips of 64 bytes allocate nothing, plain; over TLS 1.3 only OpenSSL's record bookkeeping",
          arguments: StreamCase.backends, [false, true])
    func tcpPingPong(backend: EvplProtocol.Backend, tls: Bool) throws {
        let loop = try makeLoop()
        let fixtures = tls ? try TLSFixtures.get() : nil
        let evplProtocol = EvplProtocol(.tcp, backend: backend, tls: try fixtures?.clientContext())
        let listener = try Listener(address: SocketAddress(host: "127.0.0.1", port: 0),
                                    protocol: EvplProtocol(.tcp, backend: backend, tls: try fixtures?.serverContext()))
        try Self.expectPingPongAllocationFree(loop, listener: listener, clientProtocol: evplProtocol, "\(backend.rawValue) TCP\(tls ? " TLS" : "") round trips",
                                              allowing: tls ? Self.openSSLAllocationsPerRoundTrip + Self.allowedPerOperation : Self.allowedPerOperation)
    }

    @Test("10,000 in-process ping-pong round trips of 64 bytes allocate nothing at either end (both on this loop)")
    func inProcessPingPong() throws {
        let loop = try makeLoop()
        let listener = try Listener(address: SocketAddress(inProcessName: "allocation-\(getpid())"), protocol: EvplProtocol(.inproc))
        try Self.expectPingPongAllocationFree(loop, listener: listener, clientProtocol: EvplProtocol(.inproc), "in-process round trips")
    }

    /// Round trips of one client echoed by `listener`'s connections on the same loop.
    final class EchoPingPong {
        /// Round trips completed so far.
        var completed = 0
        /// Sends that threw.
        var failures = 0
    }

    /// Attaches an echo server to `listener` on `loop` and connects a client
    /// that sends 64-byte requests back to back, each after the last's echo.
    static func startEchoPingPong(_ loop: EventLoop, listener: Listener, clientProtocol: EvplProtocol) throws -> EchoPingPong {
        loop.attach(to: listener) { connection in
            connection.handler = { connection, event in
                guard case .received(let bytes) = event else { return }
                bytes.forEachSegment { try? connection.send(copying: $0) }
            }
        }
        let request = [UInt8](repeating: 0x5A, count: 64)
        let pingPong = EchoPingPong()
        var echoedBytes = 0
        _ = try loop.connect(to: listener.address, protocol: clientProtocol) { connection, event in
            switch event {
            case .connected:
                request.withUnsafeBytes { do { try connection.send(copying: $0) } catch { pingPong.failures += 1 } }
            case .received(let bytes):
                echoedBytes += bytes.count
                guard echoedBytes >= request.count else { return }
                echoedBytes -= request.count
                pingPong.completed += 1
                request.withUnsafeBytes { do { try connection.send(copying: $0) } catch { pingPong.failures += 1 } }
            default:
                break
            }
        }
        return pingPong
    }

    /// Echoes 64-byte requests through `listener` on `loop` and expects the
    /// steady state to allocate at most `allowed` heap blocks per round trip.
    static func expectPingPongAllocationFree(_ loop: EventLoop, listener: Listener, clientProtocol: EvplProtocol, _ what: String,
                                             allowing allowed: Double = allowedPerOperation, sourceLocation: SourceLocation = #_sourceLocation) throws {
        let pingPong = try startEchoPingPong(loop, listener: listener, clientProtocol: clientProtocol)
        try expectSteadyStateAllocationFree(loop, what, allowing: allowed, completed: { pingPong.completed }, sourceLocation: sourceLocation)
        #expect(pingPong.failures == 0, sourceLocation: sourceLocation)
        listener.close()
        expectNoLeaks(loop, sourceLocation: sourceLocation)
    }

    /// The pool's trim interval (``BufferPool/trim()`` runs a second after
    /// it is asked for).
    static let trimInterval = 1.0

    @Test("in-process ping-pong for 2.5 trim intervals with a pool that trims every interval allocates nothing once warm")
    func pingPongAcrossTrims() throws {
        // Keeping no idle memory makes the pool ask for a trim after every trim.
        let loop = try makeLoop { $0.poolIdleBytes = 0 }
        let listener = try Listener(address: SocketAddress(inProcessName: "trims-\(getpid())"), protocol: EvplProtocol(.inproc))
        let pingPong = try Self.startEchoPingPong(loop, listener: listener, clientProtocol: EvplProtocol(.inproc))
        // The warm-up includes the first trim, which makes the one timer.
        try drive(loop, "warm-up round trips and the first trim") { pingPong.completed >= Self.warmUpRounds && loop.bufferPool.trims >= 1 }
        let trimsBefore = loop.bufferPool.trims
        let startedAt = pingPong.completed
        let end = MonotonicClock.nanoseconds() + UInt64(2.5 * Self.trimInterval * 1e9)
        let allocations = try drive(loop, "2.5 trim intervals of round trips") { MonotonicClock.nanoseconds() >= end }
        #expect(loop.bufferPool.trims - trimsBefore >= 2, "the pool trimmed \(loop.bufferPool.trims - trimsBefore) times")
        #expect(pingPong.completed - startedAt > 1_000)
        #expect(allocations == 0, "\(allocations) heap allocations in \(pingPong.completed - startedAt) round trips and \(loop.bufferPool.trims - trimsBefore) trims")
        listener.close()
    }

    @Test("10,000 UDP ping-pong round trips of 64 bytes allocate nothing", arguments: StreamCase.backends)
    func udpPingPong(backend: EvplProtocol.Backend) throws {
        let loop = try makeLoop()
        let evplProtocol = EvplProtocol(.udp, backend: backend)
        let loopback = try SocketAddress(host: "127.0.0.1", port: 0)
        let server = try loop.bindDatagram(loopback, protocol: evplProtocol) { endpoint, bytes, source in
            bytes.forEachSegment { try? endpoint.send(to: source, copying: $0) }
        }
        let request = [UInt8](repeating: 0xA5, count: 64)
        var completed = 0
        var failures = 0
        let serverAddress = server.localAddress
        let client = try loop.bindDatagram(loopback, protocol: evplProtocol) { endpoint, bytes, _ in
            completed += 1
            request.withUnsafeBytes { do { try endpoint.send(to: serverAddress, copying: $0) } catch { failures += 1 } }
        }
        try request.withUnsafeBytes { try client.send(to: serverAddress, copying: $0) }
        try Self.expectSteadyStateAllocationFree(loop, "\(backend.rawValue) UDP round trips") { completed }
        #expect(failures == 0)
        client.close()
        server.close()
        expectNoLeaks(loop)
    }

    @Test("10,000 block reads of 4 KiB allocate nothing on the loop thread",
          arguments: BlockEngine.allCases.filter { $0.unavailableReason == nil })
    func blockReads(engine: BlockEngine) throws {
        let path = "/var/tmp/evpl-alloc-\(getpid())-\(UniqueName.next()).img"
        defer { unlink(path) }
        let loop = try makeLoop()
        let blocks = 256
        let device = try loop.openBlockDevice(path, engine: engine, create: UInt64(blocks * 4096), queueDepth: 4)
        var buffers: [IOVec] = []
        for _ in 0..<4 {
            var iovec = try loop.bufferPool.allocate()
            iovec.length = 4096
            buffers.append(iovec)
        }
        var completed = 0
        var failures = 0
        var nextBlock = 0
        device.handler = { device, completion in
            if completion.error != nil || completion.bytes != 4096 { failures += 1 }
            completed += 1
            let slot = Int(completion.tag)
            device.read(into: buffers[slot], at: UInt64(nextBlock * 4096), tag: completion.tag)
            nextBlock = (nextBlock + 1) % blocks
        }
        for slot in 0..<buffers.count {
            device.read(into: buffers[slot], at: UInt64(slot * 4096), tag: UInt64(slot))
        }
        try Self.expectSteadyStateAllocationFree(loop, "\(engine.rawValue) reads") { completed }
        #expect(failures == 0)
        device.handler = { _, _ in }
        try drive(loop, "the last reads") { device.pendingRequests == 0 }
        device.close()
        for buffer in buffers { buffer.release() }
        expectNoLeaks(loop)
    }

    @Test("10,000 async TCP ping-pong round trips of 64 bytes allocate nothing, server and client both async", arguments: StreamCase.backends)
    func asyncTCPPingPong(backend: EvplProtocol.Backend) throws {
        let loop = try makeLoop()
        let evplProtocol = EvplProtocol(.tcp, backend: backend)
        let listener = try Listener(address: SocketAddress(host: "127.0.0.1", port: 0), protocol: evplProtocol)
        let address = listener.address
        let completed = AtomicCounter()
        let failures = AtomicCounter()
        let stop = Atomic<Bool>(false)
        let running = AtomicCounter()
        running.add(2)
        Task(executorPreference: loop.executor) { @Sendable in
            defer { running.add(-1) }
            do {
                let connection = try await acceptOne(from: listener, segmenter: Segmenters.fixedLength(64))
                while let request = try await connection.receive() {
                    try await connection.write(request)
                }
            } catch {
                failures.increment()
            }
        }
        Task(executorPreference: loop.executor) { @Sendable in
            defer { running.add(-1) }
            do {
                let connection = try await EventLoop.current!.connect(to: address, protocol: evplProtocol, segmenter: Segmenters.fixedLength(64))
                let request = [UInt8](repeating: 0x5A, count: 64)
                while !stop.load(ordering: .relaxed) {
                    try await connection.write(request)
                    guard let reply = try await connection.receive(), reply.count == 64 else { return failures.increment() }
                    completed.increment()
                }
                connection.finish()
                while try await connection.receive() != nil {}
            } catch {
                failures.increment()
            }
        }
        try Self.expectSteadyStateAllocationFree(loop, "\(backend.rawValue) async TCP round trips") { completed.value }
        stop.store(true, ordering: .relaxed)
        try drive(loop, "the tasks to end") { running.value == 0 }
        #expect(failures.value == 0)
        listener.close()
        expectNoLeaks(loop)
    }

    @Test("10,000 block reads of 4 KiB taken from a completion stream allocate nothing on the loop thread",
          arguments: BlockEngine.allCases.filter { $0.unavailableReason == nil })
    func blockCompletionStream(engine: BlockEngine) throws {
        let path = "/var/tmp/evpl-alloc-\(getpid())-\(UniqueName.next()).img"
        defer { unlink(path) }
        let loop = try makeLoop()
        let blocks = 256, depth = 4
        let device = try loop.openBlockDevice(path, engine: engine, create: UInt64(blocks * 4096), queueDepth: depth)
        let completions = device.completions()
        var slots: [IOVec] = []
        for _ in 0..<depth {
            var slot = try loop.bufferPool.allocate()
            slot.length = 4096
            slots.append(slot)
        }
        let consumer = OnLoopValue((completions, device, slots))
        let completed = AtomicCounter()
        let failures = AtomicCounter()
        let stop = Atomic<Bool>(false)
        let ended = Atomic<Bool>(false)
        for slot in 0..<depth { device.read(into: slots[slot], at: UInt64(slot * 4096), tag: UInt64(slot)) }
        Task(executorPreference: loop.executor) { @Sendable in
            let (completions, device, slots) = consumer.value
            var next = depth
            do {
                for try await completion in completions {
                    if completion.bytes != 4096 { failures.increment() }
                    completed.increment()
                    guard !stop.load(ordering: .relaxed) else { continue }
                    device.read(into: slots[Int(completion.tag)], at: UInt64(next % blocks * 4096), tag: completion.tag)
                    next += 1
                }
            } catch {
                failures.increment()
            }
            ended.store(true, ordering: .releasing)
        }
        try Self.expectSteadyStateAllocationFree(loop, "\(engine.rawValue) completion stream") { completed.value }
        stop.store(true, ordering: .relaxed)
        try drive(loop, "the stream to end") { ended.load(ordering: .acquiring) }
        #expect(failures.value == 0)
        for slot in slots { slot.release() }
        device.close()
        expectNoLeaks(loop)
    }

    @Test("10,000 async block reads of 4 KiB from 4 tasks allocate nothing on the loop thread",
          arguments: BlockEngine.allCases.filter { $0.unavailableReason == nil })
    func asyncBlockReads(engine: BlockEngine) throws {
        let path = "/var/tmp/evpl-alloc-\(getpid())-\(UniqueName.next()).img"
        defer { unlink(path) }
        let loop = try makeLoop()
        let blocks = 256
        let device = try loop.openBlockDevice(path, engine: engine, create: UInt64(blocks * 4096), queueDepth: 4)
        let handle = device.handle
        let completed = AtomicCounter()
        let failures = AtomicCounter()
        let running = AtomicCounter()
        let stop = Atomic<Bool>(false)
        for task in 0..<4 {
            running.increment()
            Task(executorPreference: loop.executor) { @Sendable in
                defer { running.add(-1) }
                guard var block = try? EventLoop.current?.bufferPool.allocate() else { return failures.increment() }
                defer { block.release() }
                block.length = 4096
                var next = task
                while !stop.load(ordering: .relaxed) {
                    do {
                        if try await handle.read(into: block, at: UInt64(next * 4096)) != 4096 { failures.increment() }
                    } catch {
                        failures.increment()
                    }
                    completed.increment()
                    next = (next + 4) % blocks
                }
            }
        }
        try Self.expectSteadyStateAllocationFree(loop, "\(engine.rawValue) async reads") { completed.value }
        stop.store(true, ordering: .relaxed)
        try drive(loop, "the tasks to end") { running.value == 0 }
        #expect(failures.value == 0)
        device.close()
        expectNoLeaks(loop)
    }
}
