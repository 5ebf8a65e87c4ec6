#if EVPL_FAULT_INJECTION
@testable import Evpl
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// Block engines whose system calls (or io_uring operations) fail on cue:
/// a short transfer goes on where it stopped, an interrupted one starts
/// again, and a real failure reaches the handler as a typed error with its
/// `errno`, holds no buffer and leaves the device usable.
@Suite("System-call faults: block engines")
struct BlockFaultTests {
    /// How each storing engine reaches the kernel for a read and a write.
    private static func calls(_ engine: BlockEngine) -> (read: SystemCall, write: SystemCall, sync: SystemCall?) {
        switch engine {
        case .ioUring: return (.uringRead, .uringWrite, .uringSync)
        default: return (.preadv, .pwritev, .fdatasync)
        }
    }

    /// The engines whose transfers run through a faultable read and write.
    static let transferEngines: [BlockEngine] = storingEngines.filter { $0 != .libaio }

    /// Writes `length` pattern bytes at `offset` from two IOVecs, then reads
    /// them back into two others, with `plan` installed; returns both
    /// completions and whether the bytes read back match.
    private func writeThenRead(_ engine: BlockEngine, direct: Bool, length: Int = 96 << 10, offset: Int = 8192,
                               plan: FaultPlan) throws -> (write: BlockCompletion?, read: BlockCompletion?, matches: Bool, loop: EventLoop) {
        try plan.installed {
            let loop = try makeLoop()
            let file = ScratchFile()
            let device = try loop.openBlockDevice(file.path, engine: engine, direct: direct, create: 1 << 24, queueDepth: 8)
            let completions = Completions()
            device.handler = { _, completion in completions.record(completion) }
            let half = length / 2
            var first = try loop.bufferPool.allocate()
            var second = try loop.bufferPool.allocate()
            first.length = half
            second.length = length - half
            fillPattern(first.bytes, from: offset)
            fillPattern(second.bytes, from: offset + half)
            device.write([first, second], at: UInt64(offset), tag: 1)
            try spin(loop, seconds: 10, "the write") { completions.byTag[1] != nil }
            let readFirst = try loop.bufferPool.allocate()
            let readSecond = try loop.bufferPool.allocate()
            device.read(into: [readFirst.slice(from: 0, length: half), readSecond.slice(from: 0, length: length - half)], at: UInt64(offset), tag: 2)
            try spin(loop, seconds: 10, "the read") { completions.byTag[2] != nil }
            let matches = patternMismatch(in: UnsafeRawBufferPointer(rebasing: UnsafeRawBufferPointer(readFirst.bytes)[0..<half]), at: offset) == nil
                && patternMismatch(in: UnsafeRawBufferPointer(rebasing: UnsafeRawBufferPointer(readSecond.bytes)[0..<(length - half)]), at: offset + half) == nil
            for iovec in [first, second, readFirst, readSecond] { iovec.release() }
            device.close()
            return (completions.byTag[1], completions.byTag[2], matches, loop)
        }
    }

    @Test("short reads and writes go on where they stopped: every byte lands and reads back",
          arguments: transferEngines, [false, true])
    func shortTransfers(engine: BlockEngine, direct: Bool) throws {
        let plan = FaultPlan()
        let (read, write, _) = Self.calls(engine)
        // O_DIRECT transfers stop on a block boundary; buffered ones anywhere.
        let limit = direct ? 12288 : 5000
        plan.inject(.shortCount(limit), on: write, at: 1, times: 3)
        plan.inject(.shortCount(limit), on: read, at: 1, times: 3)
        let result = try writeThenRead(engine, direct: direct, plan: plan)
        #expect(result.write?.error == nil && result.write?.bytes == 96 << 10, "\(String(describing: result.write))")
        #expect(result.read?.error == nil && result.read?.bytes == 96 << 10, "\(String(describing: result.read))")
        #expect(result.matches, "the bytes read back differ from those written")
        #expect(plan.faultsInjected(into: write) == 3 && plan.faultsInjected(into: read) == 3)
        // (psync tries a buffered read from the page cache first, and hands
        // a short one to a worker, which starts it over.)
        #expect(result.loop.statistics.blockTransfersContinued >= 3)
        expectNoLeaks(result.loop)
    }

    @Test("EINTR and EAGAIN start the transfer again", arguments: transferEngines)
    func interruptedTransfers(engine: BlockEngine) throws {
        let plan = FaultPlan()
        let (read, write, _) = Self.calls(engine)
        plan.inject(.error(EINTR), on: write, at: 1)
        plan.inject(.error(EAGAIN), on: write, at: 2)
        plan.inject(.error(EINTR), on: read, at: 1)
        let result = try writeThenRead(engine, direct: false, plan: plan)
        #expect(result.write?.error == nil && result.write?.bytes == 96 << 10, "\(String(describing: result.write))")
        #expect(result.read?.error == nil && result.read?.bytes == 96 << 10, "\(String(describing: result.read))")
        #expect(result.matches)
        expectNoLeaks(result.loop)
    }

    @Test("EAGAIN for ever ends in the EAGAIN error after a bounded number of attempts", arguments: transferEngines)
    func endlessEAGAIN(engine: BlockEngine) throws {
        let plan = FaultPlan()
        let (_, write, _) = Self.calls(engine)
        plan.inject(.error(EAGAIN), on: write, at: 1, times: 1000)
        let result = try writeThenRead(engine, direct: false, plan: plan)
        #expect(result.write?.error?.errno == EAGAIN, "\(String(describing: result.write))")
        #expect(plan.faultsInjected(into: write) == BlockDevice.retriesWithoutProgress + 1)
        expectNoLeaks(result.loop)
    }

    @Test("ENOSPC on a write, EIO on a read and on a flush reach the handler with their errno; the device goes on",
          arguments: transferEngines)
    func failedTransfers(engine: BlockEngine) throws {
        let plan = FaultPlan()
        let (read, write, sync) = Self.calls(engine)
        plan.inject(.error(ENOSPC), on: write, at: 1)
        // Twice: psync first tries a buffered read without blocking, and a
        // failed try goes to a worker.
        plan.inject(.error(EIO), on: read, at: 1, times: 2)
        if let sync { plan.inject(.error(EIO), on: sync, at: 1) }
        try plan.installed {
            let loop = try makeLoop()
            let file = ScratchFile()
            let device = try loop.openBlockDevice(file.path, engine: engine, create: 1 << 24, queueDepth: 8)
            let completions = Completions()
            device.handler = { _, completion in completions.record(completion) }
            var data = try loop.bufferPool.allocate()
            data.length = 4096
            fillPattern(data.bytes, from: 0)
            device.write(data, at: 0, tag: 1)
            try spin(loop, seconds: 10, "the failed write") { completions.byTag[1] != nil }
            device.read(into: data, at: 0, tag: 2)
            try spin(loop, seconds: 10, "the failed read") { completions.byTag[2] != nil }
            device.flush(tag: 3)
            try spin(loop, seconds: 10, "the failed flush") { completions.byTag[3] != nil }
            #expect(completions.byTag[1]?.error?.errno == ENOSPC, "\(String(describing: completions.byTag[1]))")
            #expect(completions.byTag[1]?.bytes == 0)
            #expect(completions.byTag[2]?.error?.errno == EIO, "\(String(describing: completions.byTag[2]))")
            #expect(completions.byTag[3]?.error?.errno == EIO, "\(String(describing: completions.byTag[3]))")
            // The faults were one-off: the same requests now succeed.
            device.write(data, at: 0, tag: 4)
            try spin(loop, seconds: 10, "the second write") { completions.byTag[4] != nil }
            device.flush(tag: 5)
            try spin(loop, seconds: 10, "the second flush") { completions.byTag[5] != nil }
            #expect(completions.byTag[4]?.error == nil && completions.byTag[4]?.bytes == 4096)
            #expect(completions.byTag[5]?.error == nil)
            data.release()
            device.close()
            expectNoLeaks(loop)
        }
    }

    @Test("libaio: io_submit taking part of a batch, none (EAGAIN), or refusing one (ENOMEM): the rest still runs",
          .enabled(if: BlockEngine.libaio.unavailableReason == nil))
    func ioSubmitFaults() throws {
        let plan = FaultPlan()
        plan.inject(.error(EAGAIN), on: .ioSubmit, at: 1)
        plan.inject(.shortCount(1), on: .ioSubmit, at: 2, times: 2)
        plan.inject(.error(ENOMEM), on: .ioSubmit, at: 4)
        try plan.installed {
            let loop = try makeLoop()
            let file = ScratchFile()
            let device = try loop.openBlockDevice(file.path, engine: .libaio, create: 1 << 24, queueDepth: 16)
            let completions = Completions()
            device.handler = { _, completion in completions.record(completion) }
            var blocks: [IOVec] = []
            for index in 0..<6 {
                var block = try loop.bufferPool.allocate()
                block.length = 4096
                fillPattern(block.bytes, from: index * 4096)
                blocks.append(block)
                device.write(block, at: UInt64(index * 4096), tag: UInt64(index))
            }
            try spin(loop, seconds: 10, "six completions") { completions.order.count == 6 }
            let failed = completions.byTag.values.filter { $0.error != nil }
            #expect(failed.count == 1 && failed.first?.error?.errno == ENOMEM, "\(completions.byTag)")
            #expect(completions.byTag.values.filter { $0.error == nil }.allSatisfy { $0.bytes == 4096 })
            #expect(plan.faultsInjected(into: .ioSubmit) == 4)
            for block in blocks { block.release() }
            device.close()
            expectNoLeaks(loop)
        }
    }
}
#endif
