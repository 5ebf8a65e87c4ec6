import CEvplLinux
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// The psync block engine: `preadv`/`pwritev`/`fdatasync`/`fallocate` on a
/// few worker threads. A buffered read is first tried on the loop with
/// `RWF_NOWAIT`, which succeeds from the page cache without blocking; only
/// what would block goes to a worker. Jobs go to the workers through a
/// locked queue; results come back through a locked queue and an eventfd
/// the loop watches, so every completion still runs on the device's loop.
///
/// A worker that runs out of jobs may keep looking for the next one before
/// it sleeps on a semaphore eventfd, and the loop only signals the semaphore
/// when the spinning workers cannot take every queued job: a job picked up
/// by a spinning worker costs no cross-CPU wake-up, which on a VM is tens of
/// microseconds, as long as an `O_DIRECT` read itself. How long it looks
/// follows the loop's ``WaitPolicy``: under ``WaitPolicy/adaptive`` the
/// loop learns, as it learns its own gaps (``AdaptiveWait``), how long the
/// queue stays empty once a worker finds it so, and the workers spin only
/// across gaps of a few wake-ups; ``WaitPolicy/fixed`` spins
/// ``workerSpinNanoseconds``; ``WaitPolicy/sleep`` never spins.
final class PSyncBlockDriver: BlockDriver {
    /// What a worker needs to run one request, as plain values.
    struct Job: Sendable {
        var request: UInt
        var operation: BlockCompletion.Operation
        var fd: Int32
        var offset: UInt64
        var length: Int
        var vectors: UInt
        var vectorCount: Int32
    }

    /// How long an idle worker looks for jobs before it sleeps: the fixed
    /// policy's window, and the most the adaptive one spins.
    static let workerSpinNanoseconds: UInt64 = 50_000

    /// The state workers and the loop share.
    final class Shared: Sendable {
        let jobs = Locked<(queue: [Job], stopping: Bool)>(([], false))
        /// Jobs in `jobs.queue`, readable without the lock.
        let queuedJobs = Atomic<Int>(0)
        /// Workers looking for jobs without sleeping.
        let spinningWorkers = Atomic<Int>(0)
        /// Times a worker went to sleep.
        let workerSleeps = Atomic<Int>(0)
        /// Time workers spent spinning without finding a job.
        let wastedSpinNanoseconds = Atomic<UInt64>(0)
        /// When a worker last found the queue empty, until the loop queues
        /// the next job; 0 otherwise.
        let emptySince = Atomic<UInt64>(0)
        /// How long a worker that finds the queue empty spins for the next
        /// job, as the loop last chose it.
        let spinWindow: Atomic<UInt64>
        /// Whether only one worker at a time spins (the adaptive policy):
        /// the others would only waste their windows on the job it takes.
        let oneSpinner: Bool
        let results = Locked<[(request: UInt, result: Int)]>([])
        /// Workers wait on it (a semaphore: one count per job).
        let wakeFD: Int32
        /// The loop watches it for finished jobs.
        let doneFD: Int32

        init(wakeFD: Int32, doneFD: Int32, spinWindow: UInt64, oneSpinner: Bool) {
            self.wakeFD = wakeFD
            self.doneFD = doneFD
            self.spinWindow = Atomic(spinWindow)
            self.oneSpinner = oneSpinner
        }

        func signalDone() {
            SystemCalls.signalEventFD(doneFD)
        }
    }

    private unowned(unsafe) let device: BlockDevice
    let shared: Shared
    private var watch: FDWatch!
    private let inline: DeferredCompletions
    private var threads: [pthread_t] = []
    private var isShutDown = false
    /// Under the adaptive policy, what the loop learns of the workers' gaps.
    private var learned: AdaptiveWait?
    @exclusivity(unchecked) private var finished: [(request: UInt, result: Int)] = []

    init(device: BlockDevice, loop: EventLoop, workers: Int = 4) throws(EvplError) {
        self.device = device
        let wakeFD = SystemCalls.eventfd(0, Int32(EFD_CLOEXEC | EFD_SEMAPHORE))
        let doneFD = SystemCalls.eventfd(0, Int32(EFD_CLOEXEC | EFD_NONBLOCK))
        guard wakeFD >= 0, doneFD >= 0 else {
            let error = EvplError.lastErrno("eventfd", context: "psync workers")
            if wakeFD >= 0 { SystemCalls.close(wakeFD) }
            if doneFD >= 0 { SystemCalls.close(doneFD) }
            throw error
        }
        let policy = loop.config.spinNanoseconds == 0 ? WaitPolicy.sleep : loop.config.waitPolicy
        // The workers' window follows the gaps alone, with no idle budget:
        // one worker spins, only while jobs come within a few wake-ups of
        // each other, where a miss costs a wake-up to the worker and
        // another to the loop that waits for its completion.
        if policy == .adaptive { learned = AdaptiveWait(maximumSpin: Self.workerSpinNanoseconds, idleSpinShare: 1) }
        shared = Shared(wakeFD: wakeFD, doneFD: doneFD, spinWindow: learned?.spinWindow ?? (policy == .fixed ? Self.workerSpinNanoseconds : 0),
                        oneSpinner: learned != nil)
        inline = DeferredCompletions(device: device, loop: loop)
        super.init()
        // Fully initialized from here on: a throw runs `deinit`, whose
        // shutdown joins the workers started and closes both eventfds.
        watch = try loop.watch(fd: doneFD, interest: .readable) { [unowned self] watch, _ in
            SystemCalls.drainEventFD(watch.fd)
            deliver()
        }
        for index in 0..<workers {
            let shared = self.shared
            threads.append(try LoopThread.spawn(name: "evpl-psync-\(index)") { Self.work(shared) })
        }
    }

    deinit {
        shutdown()
    }

    override func start(_ request: BlockRequest) {
        if isShutDown {
            // Requests that waited beyond the queue depth start as the last
            // ones finish, after the workers are gone: run them here.
            inline.add(request, result: Self.run(job(for: request, address: 0)))
            return
        }
        if request.operation == .read && !device.isDirect {
            // What the page cache holds is read right here, without a trip
            // to a worker; anything that would block goes to one.
            let result = SystemCalls.preadvNowait(device.fd, request.vectors, Int32(request.vectorCount), request.position)
            if result == request.remaining {
                inline.add(request, result: result)
                return
            }
        }
        // The device owns its requests and outlives those in flight.
        let job = job(for: request, address: UInt(bitPattern: Unmanaged.passUnretained(request).toOpaque()))
        if learned != nil { learnGap() }
        shared.jobs.withLock { $0.queue.append(job) }
        let queued = shared.queuedJobs.add(1, ordering: .sequentiallyConsistent).newValue
        if queued > shared.spinningWorkers.load(ordering: .sequentiallyConsistent) {
            SystemCalls.signalEventFD(shared.wakeFD)
        }
    }

    /// Records how long the queue stayed empty before this job, and tells
    /// the workers the window that follows.
    private func learnGap() {
        // A plain load first: while the workers are busy, a submission costs
        // no read-modify-write here.
        guard shared.emptySince.load(ordering: .relaxed) != 0 else { return }
        let since = shared.emptySince.exchange(0, ordering: .acquiringAndReleasing)
        guard since != 0 else { return }
        let now = MonotonicClock.nanoseconds()
        learned!.recordGap(now &- since, arrivedAt: now)
        shared.spinWindow.store(learned!.spinWindow, ordering: .relaxed)
    }

    /// The plain values a worker needs for `request`, which `address` names.
    private func job(for request: BlockRequest, address: UInt) -> Job {
        Job(request: address, operation: request.operation, fd: device.fd, offset: request.position, length: request.remaining,
            vectors: UInt(bitPattern: request.vectors), vectorCount: Int32(request.vectorCount))
    }

    /// Lets the workers finish what is queued, joins them, delivers their
    /// last results and lets go of the loop.
    override func shutdown() {
        guard !isShutDown else { return }
        isShutDown = true
        shared.jobs.withLock { $0.stopping = true }
        SystemCalls.signalEventFD(shared.wakeFD, UInt64(threads.count))
        for thread in threads { pthread_join(thread, nil) }
        threads.removeAll()
        deliver()
        watch?.remove()
        SystemCalls.close(shared.wakeFD)
        SystemCalls.close(shared.doneFD)
    }

    /// On the loop: hands every finished job back to the device.
    private func deliver() {
        shared.results.withLock { swap(&$0, &finished) }
        for index in finished.indices {
            let (address, result) = finished[index]
            Unmanaged<BlockRequest>.fromOpaque(UnsafeRawPointer(bitPattern: address)!)._withUnsafeGuaranteedRef {
                device.finish($0, result: result)
            }
        }
        finished.removeAllKeepingCapacity()
    }

    private static func work(_ shared: Shared) {
        while true {
            var next = take(shared)
            if next == nil {
                _ = shared.emptySince.compareExchange(expected: 0, desired: MonotonicClock.nanoseconds(), ordering: .acquiringAndReleasing)
                let window = shared.spinWindow.load(ordering: .relaxed)
                next = spinForJob(shared, for: window)
            }
            if let job = next {
                let result = run(job)
                shared.results.withLock { $0.append((job.request, result)) }
                shared.signalDone()
                continue
            }
            if shared.jobs.withLock({ $0.stopping && $0.queue.isEmpty }) { return }
            shared.workerSleeps.add(1, ordering: .relaxed)
            SystemCalls.drainEventFD(shared.wakeFD)
        }
    }

    /// The next queued job, if any.
    private static func take(_ shared: Shared) -> Job? {
        guard shared.queuedJobs.load(ordering: .sequentiallyConsistent) > 0 else { return nil }
        let job: Job? = shared.jobs.withLock { state in
            state.queue.isEmpty ? nil : state.queue.removeFirst()
        }
        if job != nil { shared.queuedJobs.subtract(1, ordering: .sequentiallyConsistent) }
        return job
    }

    /// Looks for a job for `window` nanoseconds (unless another worker does
    /// and one spinner is enough), counted among the
    /// spinning workers, then once more after leaving them: a job queued
    /// while the loop saw this worker spinning (and so did not signal) is
    /// never left behind.
    private static func spinForJob(_ shared: Shared, for window: UInt64) -> Job? {
        if window == 0 || shared.jobs.withLock({ $0.stopping }) { return nil }
        if shared.oneSpinner && shared.spinningWorkers.load(ordering: .sequentiallyConsistent) > 0 { return nil }
        shared.spinningWorkers.add(1, ordering: .sequentiallyConsistent)
        let deadline = MonotonicClock.nanoseconds() + window
        while MonotonicClock.nanoseconds() < deadline {
            guard shared.queuedJobs.load(ordering: .sequentiallyConsistent) > 0 else { continue }
            // Stop counting as a spinner before taking, so a job queued
            // meanwhile wakes a sleeping worker instead of waiting for this one.
            shared.spinningWorkers.subtract(1, ordering: .sequentiallyConsistent)
            if let job = take(shared) { return job }
            shared.spinningWorkers.add(1, ordering: .sequentiallyConsistent)
        }
        shared.spinningWorkers.subtract(1, ordering: .sequentiallyConsistent)
        shared.wastedSpinNanoseconds.add(window, ordering: .relaxed)
        return take(shared)
    }

    /// Runs one job; returns bytes transferred or a negative errno (the
    /// device starts the rest of a short transfer again).
    private static func run(_ job: Job) -> Int {
        let vectors = UnsafeMutablePointer<iovec>(bitPattern: job.vectors)
        switch job.operation {
        case .read, .write:
            guard let vectors else { return -Int(EINVAL) }
            while true {
                let result = job.operation == .read
                    ? SystemCalls.preadv(job.fd, vectors, job.vectorCount, job.offset)
                    : SystemCalls.pwritev(job.fd, vectors, job.vectorCount, job.offset)
                if result < 0 && Glibc.errno == EINTR { continue }
                return result < 0 ? -Int(Glibc.errno) : result
            }
        case .flush:
            return SystemCalls.fdatasync(job.fd) == 0 ? 0 : -Int(Glibc.errno)
        case .discard:
            return cevpl_fallocate(job.fd, CEVPL_FALLOC_PUNCH_HOLE | CEVPL_FALLOC_KEEP_SIZE, Int64(job.offset), Int64(job.length)) == 0 ? 0 : -Int(Glibc.errno)
        case .writeZeroes:
            return cevpl_fallocate(job.fd, CEVPL_FALLOC_ZERO_RANGE | CEVPL_FALLOC_KEEP_SIZE, Int64(job.offset), Int64(job.length)) == 0 ? 0 : -Int(Glibc.errno)
        }
    }
}
