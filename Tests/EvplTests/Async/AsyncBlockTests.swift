import Evpl
import Synchronization
import Testing
#if canImport(Glibc)
import Glibc
#endif

@Suite("Async block I/O")
struct AsyncBlockTests {
    @Test("a task writes, flushes, reads back, discards and zeroes with try await", arguments: storingEngines)
    func sequential(engine: BlockEngine) throws {
        let loop = try makeLoop()
        let path = ScratchFile().path
        defer { unlink(path) }
        try runTask(on: loop, "the block task") {
            let loop = try currentLoop()
            let device = try loop.openBlockDevice(path, engine: engine, create: 1 << 20, queueDepth: 8)
            defer { device.close() }
            var block = try loop.bufferPool.allocate()
            defer { block.release() }
            block.length = 4096
            fillPattern(block.bytes, from: 8192)
            #expect(try await device.write(block, at: 8192) == 4096)
            try await device.flush()
            memset(block.baseAddress, 0, 4096)
            #expect(try await device.read(into: block, at: 8192) == 4096)
            #expect(patternMismatch(in: UnsafeRawBufferPointer(block.bytes), at: 8192) == nil)
            try await device.discard(at: 8192, length: 4096)
            try await device.writeZeroes(at: 0, length: 4096)
            for offset in [UInt64(0), 8192] {
                memset(block.baseAddress, 0xAA, 4096)
                _ = try await device.read(into: block, at: offset)
                #expect(UnsafeRawBufferPointer(block.bytes).allSatisfy { $0 == 0 }, "offset \(offset)")
            }
        }
        expectNoLeaks(loop)
    }

    @Test("64 writes in flight from a task group through the device's handle, then 64 reads: every block reads back", arguments: storingEngines)
    func taskGroup(engine: BlockEngine) throws {
        let loop = try makeLoop()
        let path = ScratchFile().path
        defer { unlink(path) }
        let mostPending = Atomic<Int>(0)
        try runTask(on: loop, "the task group") {
            let device = try currentLoop().openBlockDevice(path, engine: engine, create: 64 * 4096, queueDepth: 8)
            defer { device.close() }
            let handle = device.handle
            for writing in [true, false] {
                try await withThrowingTaskGroup(of: Void.self) { group in
                    for index in 0..<64 {
                        group.addTask {
                            let loop = try currentLoop()
                            var block = try loop.bufferPool.allocate()
                            defer { block.release() }
                            block.length = 4096
                            let offset = index * 4096
                            if writing {
                                fillPattern(block.bytes, from: offset)
                                #expect(try await handle.write(block, at: UInt64(offset)) == 4096)
                            } else {
                                #expect(try await handle.read(into: block, at: UInt64(offset)) == 4096)
                                #expect(patternMismatch(in: UnsafeRawBufferPointer(block.bytes), at: offset) == nil, "block \(index)")
                            }
                        }
                    }
                    // The children run before this task resumes: they have submitted.
                    await Task.yield()
                    mostPending.store(max(mostPending.load(ordering: .relaxed), device.pendingRequests), ordering: .relaxed)
                    try await group.waitForAll()
                }
            }
        }
        #expect(mostPending.load(ordering: .relaxed) > 8, "requests beyond the depth wait in the device")
        expectNoLeaks(loop)
    }

    @Test("a handle used from a task on another executor hops to the loop and back")
    func handleFromElsewhere() async throws {
        let path = ScratchFile().path
        defer { unlink(path) }
        let handleBox = Mutex<BlockDeviceHandle?>(nil)
        let stop = Atomic<Bool>(false)
        let thread = TestThread {
            let loop = try! makeLoop()
            let device = try! loop.openBlockDevice(path, engine: .psync, create: 1 << 20, queueDepth: 4)
            handleBox.withLock { $0 = device.handle }
            while !stop.load(ordering: .acquiring) { loop.runOnce() }
            device.close()
            loop.closeAll()
        }
        let device = try waitForValue(handleBox, "the device's handle")
        #expect(!device.executor.isLoopThread)
        try await device.flush()
        try await device.discard(at: 0, length: 4096)
        #expect(!device.executor.isLoopThread)
        stop.store(true, ordering: .releasing)
        device.executor.remote.execute { _ in }
        thread.join()
    }

    @Test("errors are thrown: a short read is EIO, a closed device is invalidState, a cancelled task submits nothing", arguments: storingEngines)
    func errors(engine: BlockEngine) throws {
        let loop = try makeLoop()
        let path = ScratchFile().path
        defer { unlink(path) }
        try runTask(on: loop, "the failing requests") {
            let loop = try currentLoop()
            let device = try loop.openBlockDevice(path, engine: engine, create: 8192, queueDepth: 4)
            var block = try loop.bufferPool.allocate()
            defer { block.release() }
            block.length = 4096
            await #expect(throws: EvplError.self) { _ = try await device.read(into: block, at: 6144) }
            do throws(EvplError) {
                _ = try await device.read(into: block, at: 6144)
            } catch {
                #expect(error.errno == EIO)
            }
            let handle = device.handle
            let cancelled = Task(executorPreference: loop.executor) { @Sendable () async throws -> Void in
                withUnsafeCurrentTask { $0?.cancel() }
                try await handle.flush()
            }
            do {
                try await cancelled.value
                Issue.record("a cancelled task's request completed")
            } catch {
                #expect((error as? EvplError)?.code == .cancelled)
            }
            device.close()
            do throws(EvplError) {
                try await device.flush()
                Issue.record("a closed device accepted a flush")
            } catch {
                #expect(error.code == .invalidState)
            }
        }
        expectNoLeaks(loop)
    }

    @Test("a completion stream yields the completion of every tagged request and ends once none is in flight",
          arguments: storingEngines)
    func completionStream(engine: BlockEngine) throws {
        let loop = try makeLoop()
        let path = ScratchFile().path
        defer { unlink(path) }
        try runTask(on: loop, "the stream's consumer") {
            let loop = try currentLoop()
            let blocks = 64, depth = 8
            // Requests beyond the engine's depth of 4 wait in the device.
            let device = try loop.openBlockDevice(path, engine: engine, create: UInt64(blocks * 4096), queueDepth: 4)
            defer { device.close() }
            var slots: [IOVec] = []
            defer { for slot in slots { slot.release() } }
            for _ in 0..<depth {
                var slot = try loop.bufferPool.allocate()
                slot.length = 4096
                slots.append(slot)
            }
            let completions = device.completions()
            for writing in [true, false] {
                var nextBlock = 0
                var blockInSlot = Array(repeating: -1, count: depth)
                var blocksDone = Set<Int>()
                func submit(_ slot: Int) {
                    guard nextBlock < blocks else { return }
                    blockInSlot[slot] = nextBlock
                    let offset = nextBlock * 4096
                    if writing {
                        fillPattern(slots[slot].bytes, from: offset)
                        device.write(slots[slot], at: UInt64(offset), tag: UInt64(slot))
                    } else {
                        memset(slots[slot].baseAddress, 0, 4096)
                        device.read(into: slots[slot], at: UInt64(offset), tag: UInt64(slot))
                    }
                    nextBlock += 1
                }
                for slot in 0..<depth { submit(slot) }
                for try await completion in completions {
                    let slot = Int(completion.tag)
                    #expect(completion.error == nil)
                    #expect(completion.bytes == 4096)
                    #expect(blocksDone.insert(blockInSlot[slot]).inserted, "block \(blockInSlot[slot]) completed twice")
                    if !writing {
                        #expect(patternMismatch(in: UnsafeRawBufferPointer(slots[slot].bytes), at: blockInSlot[slot] * 4096) == nil)
                    }
                    submit(slot)
                }
                #expect(blocksDone.count == blocks, writing ? "writes" : "reads")
            }
        }
        expectNoLeaks(loop)
    }

    @Test("a task cancelled while it would wait on a completion stream gets .cancelled; the completion stays for the next call")
    func completionStreamCancelled() throws {
        let loop = try makeLoop()
        let path = ScratchFile().path
        defer { unlink(path) }
        try runTask(on: loop, "the cancelled consumer") {
            let loop = try currentLoop()
            let device = try loop.openBlockDevice(path, engine: .psync, create: 4096, queueDepth: 1)
            defer { device.close() }
            var block = try loop.bufferPool.allocate()
            defer { block.release() }
            block.length = 4096
            let completions = device.completions()
            device.read(into: block, at: 0, tag: 7)
            withUnsafeCurrentTask { $0?.cancel() }
            do throws(EvplError) {
                _ = try await completions.next()
                Issue.record("a cancelled task waited for a completion")
            } catch {
                #expect(error.code == .cancelled)
            }
            // Yielding does not throw: let the loop finish the read.
            while device.pendingRequests > 0 { await Task.yield() }
            let completion = try await completions.next()
            #expect(completion?.tag == 7)
            #expect(completion?.bytes == 4096)
            #expect(try await completions.next() == nil, "nothing in flight ends the stream")
        }
        expectNoLeaks(loop)
    }
}
