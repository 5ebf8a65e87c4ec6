import Logging
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// Runs Swift concurrency jobs on an ``EventLoop``'s thread, as part of its
/// iterations: the loop as a `SerialExecutor` (for actors) and a
/// `TaskExecutor` (for tasks that prefer it).
///
/// A task started with `Task(executorPreference: loop.executor)` or inside
/// `withTaskExecutorPreference(loop.executor)` runs its synchronous stretches
/// on the loop thread, where it may touch the loop's connections and block
/// devices directly. An actor whose `unownedExecutor` is
/// `loop.executor.asUnownedSerialExecutor()` is isolated to the loop thread.
///
/// A job enqueued on the loop thread joins a local queue that runs in the
/// same iteration, after the events that produced it and before queued sends
/// are flushed, with no system call and no allocation once the queue has
/// grown to its working size. A job from another thread goes through
/// ``EventLoopRemote``'s queue and wakes the loop. Ready jobs keep the hybrid
/// wait from sleeping, like any other activity.
///
/// Jobs enqueued after the loop is gone cannot run: the loop's logger
/// reports each at error level and the job's task never resumes. Keep a loop
/// alive until the tasks that run on it have finished.
public final class EventLoopExecutor: SerialExecutor, TaskExecutor, Sendable {
    /// The loop's thread-safe handle (see ``EventLoop/remote``), through
    /// which jobs from other threads arrive.
    public let remote: EventLoopRemote
    /// The face actors see: its jobs run isolated to the loop, while this
    /// object's own jobs are nonisolated code of tasks that prefer the loop.
    /// Running the two kinds alike would make the runtime hop once more to
    /// leave the actor's isolation, costing a job per resumption.
    private let serialFace: LoopSerialExecutor
    private let ownerThread: pthread_t
    private let logger: Logger
    private let hasEnded = Atomic<Bool>(false)
    /// The loop, set once it exists; read only on its thread while
    /// `hasEnded` is false.
    nonisolated(unsafe) unowned(unsafe) var loop: EventLoop?
    /// Jobs enqueued on the loop thread, and the batch being run; touched
    /// only there.
    private nonisolated(unsafe) var localJobs = IterationQueue<LoopJob>()

    init(remote: EventLoopRemote, ownerThread: pthread_t, logger: Logger) {
        self.remote = remote
        self.ownerThread = ownerThread
        self.logger = logger
        serialFace = LoopSerialExecutor(ownerThread: ownerThread)
        localJobs.reserveCapacity(64)
        serialFace.owner = self
    }

    /// Whether the caller runs on the loop's thread.
    @inline(__always)
    public var isLoopThread: Bool { pthread_equal(pthread_self(), ownerThread) != 0 }

    // MARK: Executor

    /// Queues `job`, the nonisolated code of a task that prefers the loop,
    /// to run on the loop thread: in the current iteration when called
    /// there, otherwise through the remote queue, waking the loop.
    public func enqueue(_ job: consuming ExecutorJob) {
        accept(LoopJob(job: UnownedJob(job), isolated: false))
    }

    /// The loop as the serial executor of actors that adopt it (return it
    /// from an actor's `unownedExecutor`).
    public func asUnownedSerialExecutor() -> UnownedSerialExecutor {
        UnownedSerialExecutor(ordinary: serialFace)
    }

    /// This executor as a task executor preference.
    public func asUnownedTaskExecutor() -> UnownedTaskExecutor {
        UnownedTaskExecutor(ordinary: self)
    }

    /// Traps unless called on the loop thread.
    public func checkIsolated() {
        serialFace.checkIsolated()
    }

    /// Whether the current code runs on the loop thread.
    public func isIsolatingCurrentContext() -> Bool? {
        isLoopThread
    }

    func accept(_ job: LoopJob) {
        guard !hasEnded.load(ordering: .acquiring) else {
            logger.error("job enqueued on an event loop that no longer exists; its task will not resume")
            return
        }
        if isLoopThread {
            localJobs.append(job)
        } else {
            remote.enqueue(.job(job))
        }
    }

    // MARK: Loop side

    /// The loop, when called on its thread while it exists.
    var loopIfRunningHere: EventLoop? {
        guard isLoopThread, !hasEnded.load(ordering: .acquiring) else { return nil }
        return loop
    }

    /// Whether jobs wait to run; read on the loop thread.
    var hasReadyJobs: Bool { !localJobs.isEmpty }

    /// Adds a job that came through the remote queue; on the loop thread.
    func enqueueLocally(_ job: LoopJob) {
        localJobs.append(job)
    }

    /// Runs the jobs ready now, on the loop thread; jobs they enqueue wait
    /// for the next iteration, so a task that yields in a loop cannot starve
    /// the loop's I/O. Returns whether any ran.
    func runReadyJobs() -> Bool {
        guard localJobs.beginBatch() else { return false }
        let serial = UnownedSerialExecutor(ordinary: serialFace)
        let task = asUnownedTaskExecutor()
        for index in localJobs.batch.indices {
            let job = localJobs.batch[index]
            if job.isolated {
                job.job.runSynchronously(on: serial)
            } else {
                job.job.runSynchronously(on: task)
            }
        }
        localJobs.endBatch()
        return true
    }

    /// Called as the loop goes away: later jobs are refused, and jobs still
    /// queued are dropped (they would run against objects being torn down).
    func loopEnded() {
        hasEnded.store(true, ordering: .releasing)
        if !localJobs.isEmpty {
            logger.error("event loop ended with jobs still queued; their tasks will not resume", metadata: ["jobs": "\(localJobs.count)"])
            localJobs.removeAll()
        }
    }
}

/// A job for the loop thread, and whether it runs isolated to the loop (an
/// actor's job) or as a task's nonisolated code.
struct LoopJob: Sendable {
    let job: UnownedJob
    let isolated: Bool
}

/// The serial-executor face of an ``EventLoopExecutor``: actors that adopt
/// the loop enqueue here.
final class LoopSerialExecutor: SerialExecutor, Sendable {
    private let ownerThread: pthread_t
    /// Set right after both exist; the owner outlives this face.
    nonisolated(unsafe) unowned(unsafe) var owner: EventLoopExecutor?

    init(ownerThread: pthread_t) {
        self.ownerThread = ownerThread
    }

    func enqueue(_ job: consuming ExecutorJob) {
        owner!.accept(LoopJob(job: UnownedJob(job), isolated: true))
    }

    func asUnownedSerialExecutor() -> UnownedSerialExecutor {
        UnownedSerialExecutor(ordinary: self)
    }

    func checkIsolated() {
        if _slowPath(pthread_equal(pthread_self(), ownerThread) == 0) { threadConfinementViolated("not on the event loop's thread") }
    }

    func isIsolatingCurrentContext() -> Bool? {
        pthread_equal(pthread_self(), ownerThread) != 0
    }
}
