import CAllocationCounter
@testable import Evpl
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// Resident memory of process `pid` in bytes, from `/proc/<pid>/status`.
func residentBytes(of pid: pid_t) -> Int? {
    guard let file = fopen("/proc/\(pid)/status", "r") else { return nil }
    defer { fclose(file) }
    var line: UnsafeMutablePointer<CChar>?
    var capacity = 0
    defer { free(line) }
    while getline(&line, &capacity, file) > 0 {
        let text = String(cString: line!)
        if text.hasPrefix("VmRSS:") {
            let digits = text.filter(\.isNumber)
            return Int(digits).map { $0 * 1024 }
        }
    }
    return nil
}

@Suite("Bounded pool memory")
struct PoolCeilingTests {
    @Test("at the ceiling, allocation and copying sends throw resourceExhausted and queue nothing; copying sends stop short of the receive reserve")
    func ceilingThrows() throws {
        let loop = try makeLoop(bufferSize: 4096) { $0.poolMaxBytes = 6 * 4096 }
        let pool = loop.bufferPool
        #expect(pool.maxBuffers == 6)
        var held: [IOVec] = []
        while let iovec = try? pool.allocate() { held.append(iovec) }
        #expect(held.count == 6)
        let error = #expect(throws: EvplError.self) { _ = try pool.allocate() }
        #expect(error?.code == .resourceExhausted)

        let listener = try Listener(address: SocketAddress(host: "127.0.0.1", port: 0), protocol: .tcp)
        loop.attach(to: listener) { $0.handler = { _, _ in } }
        var client: Connection?
        client = try loop.connect(to: listener.address, protocol: .tcp) { _, _ in }
        try spin(loop, "connected") { client?.isReceivingPaused == false && client?.localAddress != nil }
        let sendError = #expect(throws: EvplError.self) { try client?.send(Array(repeating: 1, count: 20_000)) }
        #expect(sendError?.code == .resourceExhausted)
        #expect(client?.queuedBytes == 0, "a failed send queued \(client?.queuedBytes ?? -1) bytes")
        for iovec in held { iovec.release() }
        // Five buffers would leave fewer than the two the pool keeps for receives.
        #expect(pool.receiveReserve == 2)
        let reserveError = #expect(throws: EvplError.self) { try client?.send(Array(repeating: 1, count: 20_000)) }
        #expect(reserveError?.code == .resourceExhausted)
        try client?.send(Array(repeating: 1, count: 12_000))
        #expect(client?.queuedBytes == 12_000)
        listener.close()
        expectNoLeaks(loop)
    }

    @Test("a TLS send made before the handshake completes is refused past what the pool could hold, as after it",
          arguments: StreamCase.backends)
    func sendsBeforeTheHandshakeAreBounded(_ backend: EvplProtocol.Backend) throws {
        let loop = try makeLoop(bufferSize: 4096) { $0.poolMaxBytes = 32 * 4096 }
        let base = EvplProtocol(.tcp, backend: backend)
        let listener = try Listener(address: SocketAddress(host: "127.0.0.1", port: 0), protocol: try HarnessTLS.protocolFor(base, role: .server))
        defer { listener.close() }
        var serverReceived = 0
        loop.attach(to: listener) { connection in
            connection.handler = { _, event in
                if case .received(let bytes) = event { serverReceived += bytes.count }
            }
        }
        let client = try loop.connect(to: listener.address, protocol: try HarnessTLS.protocolFor(base, role: .client)) { _, _ in }
        // Queued before the handshake: held outside the pool until it
        // completes, yet bounded by what the pool could hold then.
        var accepted = 0
        var refusal: EvplError?
        for _ in 0..<64 {
            do throws(EvplError) {
                try client.send(Array(repeating: 7, count: 4096))
                accepted += 4096
            } catch {
                refusal = error
                break
            }
        }
        #expect(refusal?.code == .resourceExhausted)
        #expect(accepted > 0 && accepted < 32 * 4096, "accepted \(accepted) bytes before the handshake")
        do {
            try spin(loop, "the early bytes to arrive") { serverReceived == accepted }
        } catch {
            Issue.record("\(error): \(serverReceived) of \(accepted); pool \(loop.bufferPool.buffersInUse) in use, \(loop.bufferPool.buffersLentToKernel) lent; client \(client.state), queue \(client.queuedBytes)")
        }
    }

    @Test("a pool of 8 small buffers still echoes 2 MiB: receives pause at the ceiling and resume as sends drain",
          arguments: StreamCase.backends, [false, true])
    func tinyPoolEcho(_ backend: EvplProtocol.Backend, unix: Bool) throws {
        let loop = try makeLoop(bufferSize: 4096) {
            $0.poolMaxBytes = 8 * 4096
            $0.buffersPerSlab = 4
            $0.ioUringBufferRingEntries = 4
        }
        let evplProtocol = EvplProtocol(unix ? .unix : .tcp, backend: backend)
        let address = unix ? try SocketAddress(unixPath: "/tmp/evpl-pool-\(getpid())-\(UniqueName.next()).sock")
                           : try SocketAddress(host: "127.0.0.1", port: 0)
        let listener = try Listener(address: address, protocol: evplProtocol)
        var peak = 0
        var sendErrors = 0
        loop.attach(to: listener) { connection in
            connection.handler = { connection, event in
                guard case .received(let bytes) = event else { return }
                do throws(EvplError) { try connection.send(taking: bytes.retainedIOVecs()) } catch { sendErrors += 1 }
                peak = max(peak, connection.loop.bufferPool.buffersInUse)
            }
        }
        let bound = listener.address
        let result = ResultSlot()
        let client = TestThread { result.set(RawStreamClient.echo(to: bound, total: 2 << 20, maxChunk: 16 * 1024, seed: 3, seconds: 30)) }
        try spin(loop, seconds: 40, "the client") { result.outcome != nil }
        client.join()
        let outcome = try #require(result.outcome)
        #expect(outcome.isComplete, "\(outcome)")
        #expect(sendErrors == 0)
        #expect(peak <= 8)
        // Sockets pause their reads at the ceiling; io_uring's ring runs dry and gets one buffer at a time.
        let stalls = backend == .ioUring ? loop.statistics.receiveBufferShortages : loop.statistics.memoryPauses
        #expect(stalls >= 1, "the ceiling never held a receive back")
        listener.close()
        expectNoLeaks(loop)
    }

    @Test("copying sends leave the receive reserve: connections whose two ends share a loop and each send until the pool refuses still exchange 512 KiB both ways",
          arguments: StreamCase.backends, [false, true])
    func sendsLeaveTheReceiveReserve(_ backend: EvplProtocol.Backend, tls: Bool) throws {
        let loop = try makeLoop(bufferSize: 16384) {
            $0.poolMaxBytes = 16 * 16384
            $0.buffersPerSlab = 8
            $0.ioUringBufferRingEntries = 8
            $0.socketBufferBytes = 32768
        }
        #expect(loop.bufferPool.receiveReserve == 2)
        let base = EvplProtocol(.tcp, backend: backend)
        let serverProtocol = tls ? try HarnessTLS.protocolFor(base, role: .server) : base
        let clientProtocol = tls ? try HarnessTLS.protocolFor(base, role: .client) : base
        let listener = try Listener(address: SocketAddress(host: "127.0.0.1", port: 0), protocol: serverProtocol)
        defer { listener.close() }
        // More connections than the reserve has buffers, all established
        // before any sends. No queue limit of their own: each end copies
        // until the pool refuses the send.
        let total = 512 << 10
        let pairs = 4
        let servers = (0..<pairs).map { HarnessPeer(name: "server \($0)", total: total, maxChunk: 65536, pauseChance: 0, queueLimit: .max, abortAfter: nil, seed: 11 + UInt64($0)) }
        let clients = (0..<pairs).map { HarnessPeer(name: "client \($0)", total: total, maxChunk: 65536, pauseChance: 0, queueLimit: .max, abortAfter: nil, seed: 31 + UInt64($0)) }
        var accepted = 0
        loop.attach(to: listener) { connection in
            connection.finishesWhenInputCloses = false
            connection.handler = servers[accepted].handle
            accepted += 1
        }
        for client in clients {
            let connection = try loop.connect(to: listener.address, protocol: clientProtocol, client.handle)
            connection.finishesWhenInputCloses = false
        }
        let ends = servers + clients
        for end in ends { end.holdsSends = true }
        try spin(loop, "every connection") { ends.allSatisfy { $0.connected == 1 } }
        for end in ends {
            end.holdsSends = false
            end.pump()
        }
        do {
            try spin(loop, seconds: 30, "every end to receive everything") { ends.allSatisfy { $0.received == total } }
        } catch {
            let pool = loop.bufferPool
            let states = ends.map { "\($0.name): queued \($0.queued), received \($0.received), send queue \($0.connection?.queuedBytes ?? -1), disconnected \($0.disconnected) \(String(describing: $0.disconnectError))" }
            Issue.record("\(error): pool \(pool.buffersInUse) in use (\(pool.buffersLentToKernel) lent), \(loop.memoryWaiters.count) waiting for memory; \(states.joined(separator: "; "))")
            return
        }
        #expect(ends.allSatisfy { $0.firstMismatch == nil })
        #expect(ends.map(\.refusedSends).reduce(0, +) > 0, "the sends never reached the pool's limit")
    }

    @Test("buffers idle for a trim interval give their pages back, beyond the resident floor")
    func trimReturnsIdleBuffers() throws {
        let pool = BufferPool(bufferSize: 64 * 1024, buffersPerSlab: 16, idleBytesKept: 4 * 64 * 1024)
        var held: [IOVec] = []
        for _ in 0..<160 {
            let iovec = try pool.allocate()
            memset(iovec.baseAddress, 0xAB, iovec.length)
            held.append(iovec)
        }
        for iovec in held { iovec.release() }
        held.removeAll()
        pool.trim()  // notes which buffers are free from now on
        #expect(pool.buffersTrimmed == 0, "buffers freed just now are not idle yet")
        // Some traffic keeps a few buffers hot meanwhile.
        for _ in 0..<10 { try pool.allocate().release() }
        pool.trim()
        #expect(pool.buffersTrimmed == 156, "trimmed \(pool.buffersTrimmed)")
        #expect(pool.residentFreeBuffers == 4)
        // Trimmed memory is usable again, and reads back as written.
        for _ in 0..<160 { held.append(try pool.allocate()) }
        for iovec in held {
            memset(iovec.baseAddress, 0x5A, iovec.length)
            #expect(iovec.bytes.allSatisfy { $0 == 0x5A })
            iovec.release()
        }
    }

    @Test("pools that share a process budget stay within it together, and memory one gives back is usable by the other")
    func sharedBudget() throws {
        let budget = MemoryBudget(limit: 40 * 4096)
        let first = BufferPool(bufferSize: 4096, buffersPerSlab: 8, idleBytesKept: 0, budget: budget)
        let second = BufferPool(bufferSize: 4096, buffersPerSlab: 8, idleBytesKept: 0, budget: budget)
        var held: [IOVec] = []
        while let iovec = try? first.allocate() { held.append(iovec) }
        #expect(held.count == 40)
        #expect(!second.hasRoom)
        let error = #expect(throws: EvplError.self) { _ = try second.allocate() }
        #expect(error?.code == .resourceExhausted)
        #expect(error?.context.contains("EVPL_PROCESS_POOL_MAX_BYTES") == true)
        for iovec in held { iovec.release() }
        held.removeAll()
        // The first pool keeps two chunks at most; the rest went back.
        #expect(budget.bytesReserved <= 2 * 16 * 4096, "\(budget)")
        while held.count < 8, let iovec = try? second.allocate() { held.append(iovec) }
        #expect(held.count == 8)
        for iovec in held { iovec.release() }
        // A pool keeps reserved the free buffers it keeps resident. Once the
        // budget has room again, what use no longer needs goes back at the
        // trims, after a whole interval without that use: not at once, where
        // use swinging across a chunk would return and take it back all day.
        let keeper = BufferPool(bufferSize: 4096, buffersPerSlab: 8, idleBytesKept: 8 * 4096, budget: MemoryBudget(limit: 64 * 4096))
        let taken = try (0..<64).map { _ in try keeper.allocate() }
        for iovec in taken { iovec.release() }
        #expect(keeper.budget!.bytesReserved > 8 * 4096 + 2 * 16 * 4096, "a budget with room waits for the trims: \(keeper.budget!)")
        keeper.trim()
        #expect(keeper.budget!.bytesReserved > 8 * 4096 + 2 * 16 * 4096, "the interval just ended saw 64 buffers in use: \(keeper.budget!)")
        keeper.trim()
        #expect(keeper.budget!.bytesReserved >= 8 * 4096 && keeper.budget!.bytesReserved <= 8 * 4096 + 2 * 16 * 4096, "\(keeper.budget!)")
    }

    @Test("use that swings across a budget chunk again and again, with room in the budget, returns no pages and keeps its reservation until a trim")
    func swingingUseKeepsItsReservation() throws {
        let pool = BufferPool(bufferSize: 4096, buffersPerSlab: 8, idleBytesKept: 0, budget: MemoryBudget(limit: 1024 * 4096))
        var held = try (0..<80).map { _ in try pool.allocate() }
        let reserved = pool.budget!.bytesReserved
        for _ in 0..<1_000 {
            for iovec in held[40...] { iovec.release() }
            held.removeLast(40)
            for _ in 0..<40 { held.append(try pool.allocate()) }
        }
        #expect(pool.buffersTrimmed == 0, "pages returned and faulted back: \(pool.buffersTrimmed) buffers")
        #expect(pool.budget!.bytesReserved == reserved)
        for iovec in held { iovec.release() }
        pool.trim()
        pool.trim()
        #expect(pool.budget!.bytesReserved <= 2 * 16 * 4096, "idle for a whole interval, the reservation goes back: \(pool.budget!)")
    }

    /// Four loops' pools under one budget, buffers taken and released in
    /// random order: the pages each pool keeps, as the kernel counts them,
    /// never exceed what it reserved, so that the process stays within its
    /// budget. (A trim that took buffers back into use above its low-water
    /// mark once hid resident buffers from later trims: 400 non-reading
    /// clients took `evpl echo --threads 4` to 1.7 times its budget.)
    @Test("pools that share a budget never keep more pages resident than they reserved, in any order of takes and releases",
          arguments: [1, 2, 3])
    func residentWithinReservation(_ seed: UInt64) throws {
        let budget = MemoryBudget(limit: 256 * 4096)
        let pools = (0..<4).map { _ in BufferPool(bufferSize: 4096, buffersPerSlab: 16, idleBytesKept: 8 * 4096, budget: budget) }
        var held: [[IOVec]] = Array(repeating: [], count: pools.count)
        var random = SeededRandom(seed: seed)
        for step in 0..<3000 {
            let index = Int(random.next() % UInt64(pools.count))
            if random.next() % 2 == 0 {
                for _ in 0..<(1 + random.next() % 48) {
                    guard let iovec = try? pools[index].allocate() else { break }
                    memset(iovec.baseAddress, 0x5A, iovec.length)
                    held[index].append(iovec)
                }
            } else {
                for _ in 0..<min(held[index].count, Int(1 + random.next() % 48)) {
                    held[index].remove(at: Int(random.next() % UInt64(held[index].count))).release()
                }
            }
            let resident = pools.map { $0.residentBytes() }
            for (pool, bytes) in zip(pools, resident) where bytes > pool.reservedBytes {
                Issue.record("step \(step): a pool keeps \(bytes) bytes resident, reserved \(pool.reservedBytes)")
                return
            }
            #expect(resident.reduce(0, +) <= budget.limit)
        }
        for list in held { list.forEach { $0.release() } }
    }

    @Test("a loop whose connections wait for memory at the budget refuses new ones at once, and serves again once memory is back",
          arguments: StreamCase.backends)
    func admissionAtTheBudget(_ backend: EvplProtocol.Backend) throws {
        let budget = MemoryBudget(limit: 24 * 4096)
        let loop = try makeLoop(bufferSize: 4096) {
            $0.memoryBudget = budget
            $0.buffersPerSlab = 8
            $0.ioUringBufferRingEntries = 16
        }
        let listener = try Listener(address: SocketAddress(host: "127.0.0.1", port: 0), protocol: EvplProtocol(.tcp, backend: backend))
        var accepted = 0
        loop.attach(to: listener) { connection in
            accepted += 1
            connection.segmenter = Segmenters.lengthPrefixed32()
            connection.handler = { connection, event in
                if case .received(let message) = event { try? connection.send(taking: message.retainedIOVecs()) }
            }
        }
        // Each client sends three quarters of a buffer's worth of a message
        // and stays: where io_uring consumes buffers incrementally, smaller
        // pieces of many connections would share buffers. A connection that
        // waits for memory holding part of a message must still see its
        // peer leave, or memory never comes back.
        let partial = Array(HostilePeerTests.frame([UInt8](repeating: 7, count: 4_000)).prefix(3_000))
        let flood = HostilePeerTests.flood(listener.address, count: 40, sending: partial)
        // The flood is taken in, or refused once the budget ran out with connections waiting.
        try spin(loop, seconds: 10, "the flood to be taken in") { accepted + Int(loop.statistics.admissionRefusals) == 40 }
        try spin(loop, seconds: 10, "the budget to run out") { !loop.bufferPool.hasRoom }
        try runLoop(loop, forMilliseconds: 100)
        let (acceptedBefore, refusedBefore) = (accepted, loop.statistics.admissionRefusals)
        #expect(acceptedBefore > 0)
        let late = HostilePeerTests.flood(listener.address, count: 3, sending: partial)
        try spin(loop, seconds: 10, "the late clients to be refused") { loop.statistics.admissionRefusals >= refusedBefore + 3 }
        #expect(accepted == acceptedBefore)
        for fd in late {
            var byte: UInt8 = 0
            #expect(read(fd, &byte, 1) <= 0, "a refused client was not closed")
            close(fd)
        }
        for fd in flood { close(fd) }
        try spin(loop, seconds: 10, "memory to come back") { loop.bufferPool.hasRoom && loop.bufferPool.buffersInUse - loop.bufferPool.buffersLentToKernel == 0 }
        let fd = rawConnect(to: listener.address)
        defer { close(fd) }
        let echoed = Locked<[UInt8]?>(nil)
        let reader = TestThread {
            let bytes = readExactly(fd, 14)
            echoed.withLock { $0 = bytes }
        }
        #expect(rawWriteAll(fd, HostilePeerTests.frame(Array("0123456789".utf8))))
        try spin(loop, seconds: 10, "the echo") { echoed.withLock { $0 } != nil }
        reader.join()
        #expect(echoed.withLock { $0 } == HostilePeerTests.frame(Array("0123456789".utf8)))
        listener.close()
        expectNoLeaks(loop)
    }

    @Test("at the ceiling, idle connections give back the fill buffers they keep: 100 clients that each echo 7 bytes and stay are all served by 48 buffers",
          arguments: StreamCase.backends)
    func idleConnectionsHoldNothing(_ backend: EvplProtocol.Backend) throws {
        let loop = try makeLoop(bufferSize: 4096) {
            $0.poolMaxBytes = 48 * 4096
            $0.buffersPerSlab = 8
            $0.ioUringBufferRingEntries = 16
        }
        let listener = try Listener(address: SocketAddress(host: "127.0.0.1", port: 0), protocol: EvplProtocol(.tcp, backend: backend))
        loop.attach(to: listener) { connection in
            connection.handler = { connection, event in
                if case .received(let bytes) = event { bytes.forEachSegment { try? connection.send(copying: $0) } }
            }
        }
        let address = listener.address
        let served = AtomicCounter()
        let clients = Locked<[Int32]>([])
        let finished = AtomicCounter()
        let client = TestThread {
            defer { finished.increment() }
            for index in 0..<100 {
                let fd = rawConnect(to: address)
                guard fd >= 0 else { return }
                clients.withLock { $0.append(fd) }
                setReceiveTimeout(fd, seconds: 5)
                let payload = patternBytes(from: index, count: 7)
                guard rawWriteAll(fd, payload), readExactly(fd, 7) == payload else { return }
                served.increment()
            }
        }
        try spin(loop, seconds: 60, "the clients (\(served.value) served)") { finished.value == 1 }
        client.join()
        #expect(served.value == 100, "only \(served.value) of 100 clients were served")
        #expect(loop.bufferPool.buffersInUse - loop.bufferPool.buffersLentToKernel <= 48)
        clients.withLock { $0.forEach { close($0) } }
        listener.close()
        expectNoLeaks(loop)
    }

    @Test("registered slabs whose buffers all stayed free are unregistered and trimmed, and registered again before their next use")
    func trimUnregistersIdleSlabs() throws {
        let pool = BufferPool(bufferSize: 64 * 1024, buffersPerSlab: 16, idleBytesKept: 16 * 64 * 1024)
        var registered = Set<Int>()
        var registrations = 0
        pool.addRegistrationHook({ _, index in
            registered.insert(index)
            registrations += 1
        }, unregister: { index in registered.remove(index) })
        var held: [IOVec] = []
        for _ in 0..<160 {
            let iovec = try pool.allocate()
            memset(iovec.baseAddress, 0xAB, iovec.length)
            held.append(iovec)
        }
        #expect(registered.count == 10)
        for iovec in held { iovec.release() }
        held.removeAll()
        pool.trim()
        #expect(pool.buffersTrimmed == 0, "buffers freed just now are not idle yet")
        pool.trim()
        // Ten slabs, one kept resident as the idle floor.
        #expect(pool.trimmedSlabCount == 9, "trimmed \(pool.trimmedSlabCount) slabs")
        #expect(registered.count == 1)
        #expect(pool.buffersTrimmed == 144)
        // Every buffer taken again is in a registered slab, and reads back as written.
        for _ in 0..<160 {
            let iovec = try pool.allocate()
            #expect(registered.contains(iovec.buffer.slabIndex))
            memset(iovec.baseAddress, 0x5A, iovec.length)
            #expect(iovec.bytes.allSatisfy { $0 == 0x5A })
            held.append(iovec)
        }
        #expect(registered.count == 10 && pool.trimmedSlabCount == 0)
        #expect(registrations == 19)
        for iovec in held { iovec.release() }
    }

    @Test("a hook without an unregister keeps its slabs resident")
    func pinnedHookKeepsSlabs() throws {
        let pool = BufferPool(bufferSize: 64 * 1024, buffersPerSlab: 16, idleBytesKept: 0)
        pool.addRegistrationHook { _, _ in }
        let held = try (0..<64).map { _ in try pool.allocate() }
        for iovec in held { iovec.release() }
        pool.trim()
        pool.trim()
        #expect(pool.buffersTrimmed == 0 && pool.trimmedSlabCount == 0)
    }

    @Test("after an io_uring block device, idle pool memory still goes back, and block reads into re-registered buffers are right")
    func trimWithFixedBuffers() throws {
        try #require(BlockEngine.ioUring.unavailableReason == nil)
        let loop = try makeLoop { $0.poolIdleBytes = 4 << 20 }
        let file = ScratchFile()
        let device = try loop.openBlockDevice(file.path, engine: .ioUring, create: 1 << 20)
        let completions = Completions()
        device.handler = { _, completion in completions.record(completion) }
        var held: [IOVec] = []
        for _ in 0..<1024 {
            let iovec = try loop.bufferPool.allocate()
            memset(iovec.baseAddress, 0xAB, iovec.length)
            held.append(iovec)
        }
        for iovec in held { iovec.release() }
        held.removeAll()
        try runLoop(loop, forMilliseconds: 2500)
        #expect(loop.bufferPool.trimmedSlabCount >= 10, "\(loop.bufferPool.trimmedSlabCount) slabs trimmed")
        // Write a pattern and read it back through buffers of trimmed slabs.
        let data = try loop.bufferPool.allocate()
        fillPattern(data.bytes, from: 0)
        device.write([data], at: 0, tag: 1)
        try spin(loop, seconds: 10, "the write") { completions.byTag[1] != nil }
        for _ in 0..<1024 { held.append(try loop.bufferPool.allocate()) }
        let target = held[held.count - 1]
        device.read(into: [target], at: 0, tag: 2)
        try spin(loop, seconds: 10, "the read") { completions.byTag[2] != nil }
        #expect(completions.byTag[2]?.error == nil)
        #expect(patternMismatch(in: UnsafeRawBufferPointer(target.bytes), at: 0) == nil)
        #expect(loop.statistics.fixedBufferTransfers >= 2)
        for iovec in held { iovec.release() }
        data.release()
        device.close()
        expectNoLeaks(loop)
    }

    @Test("evpl echo under a flood of non-reading clients stays bounded and gives the memory back after they leave",
          arguments: StreamCase.backends)
    func echoMemoryComesBack(_ backend: EvplProtocol.Backend) throws {
        let server = try EvplServer(["echo", "--protocol", "tcp", "--backend", cliName(backend), "--port", "0"])
        usleep(200_000)
        let before = try #require(residentBytes(of: server.pid))
        var clients: [Int32] = []
        var written = 0
        for _ in 0..<24 {
            let fd = rawConnect(to: server.address)
            guard fd >= 0 else { continue }
            _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
            clients.append(fd)
        }
        let chunk = [UInt8](repeating: 0x42, count: 65536)
        let deadline = MonotonicClock.nanoseconds() + 3_000_000_000
        var peak = before
        while MonotonicClock.nanoseconds() < deadline {
            for fd in clients { written += max(0, chunk.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }) }
            peak = max(peak, residentBytes(of: server.pid) ?? 0)
            usleep(5_000)
        }
        #expect(written > 100 << 20, "the flood wrote only \(written) bytes")
        #expect(peak - before < 400 << 20, "RSS grew by \((peak - before) >> 20) MiB for 24 non-reading clients")
        for fd in clients {
            var linger = Glibc.linger(l_onoff: 1, l_linger: 0)
            setsockopt(fd, SOL_SOCKET, SO_LINGER, &linger, socklen_t(MemoryLayout<Glibc.linger>.size))
            close(fd)
        }
        var after = peak
        for _ in 0..<50 where after - before >= 50 << 20 {
            usleep(100_000)
            after = residentBytes(of: server.pid) ?? after
        }
        #expect(after - before < 50 << 20, "RSS \(before >> 20) MiB before, \(peak >> 20) MiB at the peak, \(after >> 20) MiB 5 s after")
        #expect(server.isRunning)
        #expect(server.terminate() == 0)
    }

    /// A flood of idle connections leaves nothing behind once their idle
    /// limit closed them: the heap the wave held, the connection table and
    /// the timer wheel's slots all go back.
    @Test("evpl echo --idle-timeout 1: thousands of idle connections are closed at their limit and RSS comes back within 10% of its start",
          .enabled(if: cevpl_allocation_counting_available() != 0,
                   "a sanitizer build's allocator keeps freed memory (quarantine, shadow), so RSS does not come back"),
          arguments: StreamCase.backends)
    func idleWaveLeavesNothing(_ backend: EvplProtocol.Backend) throws {
        var limit = rlimit()
        getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit)
        // Raised for good: lowering it again could fail another test's open meanwhile.
        var raised = rlimit(rlim_cur: max(limit.rlim_cur, min(limit.rlim_max, 12_000)), rlim_max: limit.rlim_max)
        setrlimit(Int32(RLIMIT_NOFILE.rawValue), &raised)
        // Each connection is a descriptor here and one in the server.
        let count = min(5000, (Int(raised.rlim_cur) - 500) / 2)
        try #require(count >= 1000, "RLIMIT_NOFILE allows only \(raised.rlim_cur) descriptors")
        let server = try EvplServer(["echo", "--backend", cliName(backend), "--port", "0", "--idle-timeout", "1", "--handshake-timeout", "0"])
        usleep(200_000)
        let before = try #require(residentBytes(of: server.pid))
        var clients: [Int32] = []
        defer { clients.forEach { close($0) } }
        for _ in 0..<count {
            let fd = rawConnect(to: server.address)
            try #require(fd >= 0, "connect: errno \(errno)")
            clients.append(fd)
        }
        let loaded = residentBytes(of: server.pid) ?? 0
        // Every client sees its end of stream once the server closed it.
        let deadline = MonotonicClock.nanoseconds() + 20_000_000_000
        for fd in clients {
            var poll = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            let left = Int32(max(0, Int64(deadline) - Int64(MonotonicClock.nanoseconds())) / 1_000_000)
            #expect(Glibc.poll(&poll, 1, left) == 1, "a connection still open 20 s after its idle limit")
        }
        var after = loaded
        for _ in 0..<50 where after > before + before / 10 {
            usleep(100_000)
            after = residentBytes(of: server.pid) ?? after
        }
        #expect(after <= before + before / 10,
                "RSS \(before >> 10) KiB at start, \(loaded >> 10) KiB with \(count) idle connections, \(after >> 10) KiB after they closed")
        #expect(server.isRunning)
        #expect(server.terminate() == 0)
    }
}

/// One outcome handed from a client thread to the test.
final class ResultSlot: @unchecked Sendable {
    // Written once under the lock by the client thread, read under it by the test.
    private var value: EchoOutcome?
    private let lock = PthreadLock()
    func set(_ outcome: EchoOutcome) { lock.locked { value = outcome } }
    var outcome: EchoOutcome? { lock.locked { value } }
}
