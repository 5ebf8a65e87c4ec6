import Evpl

/// The access pattern of an `evpl blk` run.
enum BlockWorkload: String, CaseIterable {
    case read, write, randread, randwrite, randrw

    var isRandom: Bool { self == .randread || self == .randwrite || self == .randrw }
}

/// What to run: fio's knobs.
struct BlockPlan {
    var path: String
    var workload: BlockWorkload
    var blockSize: Int
    var depth: Int
    /// Bytes of the file used; without `timeBased`, also what a run moves.
    var size: UInt64
    /// The longest a run lasts.
    var seconds: Double
    /// Run for all of `seconds`, going over `size` again as needed (fio's
    /// `--time_based`); otherwise stop after `size` bytes if that comes first.
    var timeBased: Bool
    var engine: BlockEngine
    var direct: Bool
    var verify: Bool
    /// Drive the timed phase with callbacks, with `depth` tasks awaiting
    /// their requests, or with one task taking a completion stream.
    var api: BlockAPI = .callbacks
}

/// One second of a run, for a live progress line.
struct BlockProgress {
    var second: Int
    var operationsPerSecond: Double
    var bytesPerSecond: Double
    /// The 99th percentile of the second's latencies, in nanoseconds.
    var p99: UInt64
}

/// What a run measured.
struct BlockResult {
    var operations: UInt64 = 0
    var bytes: UInt64 = 0
    var seconds: Double = 0
    var latency = LatencyHistogram()
    /// The first failed request, which ends the run.
    var error: EvplError?
    /// The file offset of the first byte `--verify` found wrong.
    var mismatch: UInt64?

    var operationsPerSecond: Double { seconds > 0 ? Double(operations) / seconds : 0 }
    var bytesPerSecond: Double { seconds > 0 ? Double(bytes) / seconds : 0 }
}

/// Runs a plan on one loop on the calling thread: `depth` requests in
/// flight, each resubmitted as it completes until `size` bytes were issued
/// or the time is up (only the time, when time-based). With
/// `verify`, the whole range is first written with ``BlockPattern``,
/// every read is checked against it, and a final pass reads everything
/// back.
final class BlockBench {
    private let plan: BlockPlan
    private let loop: EventLoop
    private let device: BlockDevice
    @exclusivity(unchecked) private var slots: [IOVec] = []
    /// What each slot's request in flight is: when it started, whether it
    /// writes, where. Written per I/O, so kept out of copy-on-write arrays.
    private struct SlotState {
        var startedAt: UInt64 = 0
        var isWrite = false
        var offset: UInt64 = 0
    }
    private let state: UnsafeMutableBufferPointer<SlotState>
    private var random: UInt64 = 0x2545_F491_4F6C_DD1D
    private var nextSequential: UInt64 = 0
    private var bytesIssued: UInt64 = 0
    private var deadline: UInt64 = 0
    /// The clock as the last completion was counted: one reading per I/O
    /// ends that request's latency, decides whether the run goes on, and
    /// starts the next request's latency (which so includes the handler's
    /// own work, tens of nanoseconds).
    private var now: UInt64 = 0
    private var idle = 0
    private var measuring = false
    private let progress: ((BlockProgress) -> Void)?
    /// The current second's tallies, for `progress`.
    @exclusivity(unchecked) private var interval = (operations: UInt64(0), bytes: UInt64(0), latency: LatencyHistogram(), second: 0, since: UInt64(0))
    @exclusivity(unchecked) private(set) var result = BlockResult()
    private let blocks: UInt64

    /// Runs `plan`; `progress`, when given, hears about each second of the
    /// timed phase as it ends.
    static func run(_ plan: BlockPlan, config: EvplConfig, progress: ((BlockProgress) -> Void)? = nil) throws(EvplError) -> BlockResult {
        let bench = try BlockBench(plan, config: config, progress: progress)
        return bench.execute()
    }

    private init(_ plan: BlockPlan, config: EvplConfig, progress: ((BlockProgress) -> Void)?) throws(EvplError) {
        self.plan = plan
        self.progress = progress
        var config = config
        config.bufferSize = max(config.bufferSize, (plan.blockSize + 4095) / 4096 * 4096)
        loop = try EventLoop(config: config)
        device = try loop.openBlockDevice(plan.path, engine: plan.engine, direct: plan.direct, create: plan.size, queueDepth: plan.depth)
        blocks = plan.size / UInt64(plan.blockSize)
        state = .allocate(capacity: plan.depth)
        state.initialize(repeating: SlotState())
        for _ in 0..<plan.depth {
            var iovec = try loop.bufferPool.allocate()
            iovec.length = plan.blockSize
            slots.append(iovec)
        }
    }

    deinit {
        state.deallocate()
    }

    private func execute() -> BlockResult {
        // The bench outlives every completion of its run.
        device.handler = { [unowned(unsafe) self] _, completion in completed(completion) }
        if plan.verify {
            sweep(writing: true)
            guard result.error == nil else { return finish() }
        }
        measuring = true
        let start = MonotonicClock.nanoseconds()
        now = start
        deadline = start + UInt64(plan.seconds * 1e9)
        idle = 0
        // A size smaller than depth blocks leaves the other slots idle from the start.
        var started = 0
        if plan.api == .asyncStream {
            started = startStreamTask()
        } else {
            for slot in 0..<plan.depth where !sizeReached {
                if plan.api == .async {
                    startTask(slot)
                } else {
                    issue(slot)
                }
                started += 1
            }
        }
        idle = plan.depth - started
        interval.since = start
        let ticker = progress == nil ? nil : try? loop.addTimer(every: .seconds(1)) { [unowned self] _ in reportSecond() }
        loop.run()
        ticker?.cancel()
        result.seconds = Double(MonotonicClock.nanoseconds() - start) / 1e9
        measuring = false
        if plan.verify && result.error == nil && result.mismatch == nil {
            sweep(writing: false)
        }
        return finish()
    }

    private func finish() -> BlockResult {
        for slot in slots { slot.release() }
        slots.removeAll()
        device.close()
        return result
    }

    // MARK: Timed phase

    /// Whether a run that is not time-based has issued every whole block of
    /// `size` (a remainder smaller than a block is not moved, as in fio).
    private var sizeReached: Bool { !plan.timeBased && bytesIssued + UInt64(plan.blockSize) > plan.size }

    private func issue(_ slot: Int) {
        let next = nextRequest()
        submit(slot, at: next.offset, write: next.write)
    }

    /// The offset and direction of the next request, counted as issued.
    private func nextRequest() -> (offset: UInt64, write: Bool) {
        bytesIssued &+= UInt64(plan.blockSize)
        let offset: UInt64
        if plan.workload.isRandom {
            random ^= random << 13
            random ^= random >> 7
            random ^= random << 17
            offset = (random % blocks) * UInt64(plan.blockSize)
        } else {
            offset = nextSequential
            nextSequential = (nextSequential + UInt64(plan.blockSize)) % (blocks * UInt64(plan.blockSize))
        }
        let write: Bool
        switch plan.workload {
        case .read, .randread: write = false
        case .write, .randwrite: write = true
        case .randrw: write = random & 1 == 0
        }
        return (offset, write)
    }

    /// The async timed phase: one task per slot, each awaiting its request
    /// and issuing the next until the run is over.
    private func startTask(_ slot: Int) {
        let bench = OnLoop(value: self)
        Task(executorPreference: loop.executor) {
            await bench.value.runSlot(slot)
        }
    }

    /// The completion-stream timed phase: one task issues every slot's
    /// first request, then takes each completion and issues that slot's
    /// next. Returns the slots started.
    private func startStreamTask() -> Int {
        let completions = device.completions()
        var started = 0
        for slot in 0..<plan.depth where !sizeReached {
            issue(slot)
            started += 1
        }
        let bench = OnLoop(value: (self, completions))
        Task(executorPreference: loop.executor) {
            await bench.value.0.takeCompletions(bench.value.1)
        }
        return started
    }

    private func takeCompletions(_ completions: BlockCompletions) async {
        do throws(EvplError) {
            for try await completion in completions {
                account(slot: Int(completion.tag), bytes: completion.bytes, error: completion.error)
                if mayContinue {
                    issue(Int(completion.tag))
                } else {
                    retire()
                }
            }
        } catch {
            if result.error == nil { result.error = error }
        }
        device.handler = { [unowned self] _, completion in completed(completion) }
    }

    private func runSlot(_ slot: Int) async {
        repeat {
            let next = nextRequest()
            state[slot].isWrite = next.write
            state[slot].offset = next.offset
            if next.write && plan.verify { BlockPattern.fill(slots[slot].baseAddress, length: plan.blockSize, fileOffset: next.offset) }
            state[slot].startedAt = now
            do throws(EvplError) {
                let bytes = next.write
                    ? try await device.write(slots[slot], at: next.offset)
                    : try await device.read(into: slots[slot], at: next.offset)
                account(slot: slot, bytes: bytes, error: nil)
            } catch {
                account(slot: slot, bytes: 0, error: error)
            }
        } while mayContinue
        retire()
    }

    /// Whether the run goes on after a completion: no failure yet, time
    /// left, and (unless time-based) blocks left to issue.
    private var mayContinue: Bool {
        result.error == nil && result.mismatch == nil && now < deadline && !sizeReached
    }

    private func submit(_ slot: Int, at offset: UInt64, write: Bool) {
        state[slot].isWrite = write
        state[slot].offset = offset
        if write {
            if plan.verify { BlockPattern.fill(slots[slot].baseAddress, length: plan.blockSize, fileOffset: offset) }
            state[slot].startedAt = now
            device.write(slots[slot], at: offset, tag: UInt64(slot))
        } else {
            state[slot].startedAt = now
            device.read(into: slots[slot], at: offset, tag: UInt64(slot))
        }
    }

    private func completed(_ completion: BlockCompletion) {
        account(slot: Int(completion.tag), bytes: completion.bytes, error: completion.error)
        if measuring {
            if mayContinue {
                issue(Int(completion.tag))
            } else {
                retire()
            }
        } else {
            continueSweep(Int(completion.tag))
        }
    }

    /// Checks and counts the completion of `slot`'s request.
    private func account(slot: Int, bytes: Int, error: EvplError?) {
        now = MonotonicClock.nanoseconds()
        if let error, result.error == nil {
            result.error = error
        }
        if error == nil {
            if !state[slot].isWrite && plan.verify && result.mismatch == nil {
                result.mismatch = BlockPattern.firstMismatch(slots[slot].baseAddress, length: plan.blockSize, fileOffset: state[slot].offset)
            }
            if measuring {
                result.operations &+= 1
                result.bytes &+= UInt64(bytes)
                result.latency.record(now - state[slot].startedAt)
                if progress != nil {
                    interval.operations &+= 1
                    interval.bytes &+= UInt64(bytes)
                    interval.latency.record(now - state[slot].startedAt)
                }
            }
        }
    }

    private func reportSecond() {
        let now = MonotonicClock.nanoseconds()
        let seconds = Double(max(1, now - interval.since)) / 1e9
        interval.second += 1
        progress?(BlockProgress(second: interval.second, operationsPerSecond: Double(interval.operations) / seconds,
                                bytesPerSecond: Double(interval.bytes) / seconds, p99: interval.latency.value(atQuantile: 0.99)))
        interval.operations = 0
        interval.bytes = 0
        interval.latency.reset()
        interval.since = now
    }

    private func retire() {
        idle += 1
        if idle == plan.depth { loop.stop() }
    }

    // MARK: Verify sweeps

    private var sweepNext: UInt64 = 0
    private var sweepWriting = false

    /// Writes (or reads and checks) every block in order, `depth` at a time.
    private func sweep(writing: Bool) {
        sweepWriting = writing
        sweepNext = 0
        idle = 0
        for slot in 0..<plan.depth { continueSweep(slot, first: true) }
        loop.run()
    }

    private func continueSweep(_ slot: Int, first: Bool = false) {
        if !first && result.error != nil || result.mismatch != nil || sweepNext >= blocks {
            retire()
            return
        }
        let offset = sweepNext * UInt64(plan.blockSize)
        sweepNext += 1
        submit(slot, at: offset, write: sweepWriting)
    }
}
