import CEvplLinux
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// The thread-safe face of an ``EventLoop``: the only way other threads
/// reach a loop. It stops the loop and queues work onto it, waking it
/// through an eventfd only when it sleeps: a loop that is polling finds
/// the work on its next pass, and nobody pays a system call.
///
/// `EventLoop` itself is not `Sendable`; hand out its `remote` instead.
public final class EventLoopRemote: Sendable {
    enum Task: Sendable {
        case run(@Sendable (EventLoop) -> Void)
        case accepted(fd: Int32, peer: SocketAddress?, listenerID: UInt64)
        case job(LoopJob)
        /// An in-process stream has bytes, an end of stream or room to send.
        case inProcessReady(InProcessStream)
        /// An in-process listener handed a new stream to this loop.
        case inProcessAccepted(InProcessStream, listenerID: UInt64)
    }

    let wakeFD: Int32
    private let queue = Locked<[Task]>([])
    private let stopFlag = Atomic<Bool>(false)
    private let pendingWake = Atomic<Bool>(false)
    /// Set while the loop blocks in its wait; producers write the eventfd
    /// only then.
    private let sleeping = Atomic<Bool>(false)
    /// Set with every enqueue, cleared when the loop takes the queue.
    private let hasTasks = Atomic<Bool>(false)

    init() throws(EvplError) {
        let fd = SystemCalls.eventfd(0, Int32(EFD_NONBLOCK | EFD_CLOEXEC))
        guard fd >= 0 else { throw EvplError.lastErrno("eventfd") }
        wakeFD = fd
    }

    deinit {
        SystemCalls.close(wakeFD)
        for task in queue.withLock({ $0 }) {
            switch task {
            case .accepted(let fd, _, _): SystemCalls.close(fd)
            case .inProcessAccepted(let stream, _): stream.refuse()
            default: break
            }
        }
    }

    /// Asks the loop to return from ``EventLoop/run()`` after its current
    /// iteration. Safe from any thread, including the loop's own.
    public func stop() {
        stopFlag.store(true, ordering: .releasing)
        wake()
    }

    /// Runs `work` on the loop's thread during one of its next iterations.
    public func execute(_ work: @escaping @Sendable (EventLoop) -> Void) {
        enqueue(.run(work))
    }

    var isStopRequested: Bool { stopFlag.load(ordering: .acquiring) }

    func clearStop() { stopFlag.store(false, ordering: .relaxed) }

    func enqueue(_ task: Task) {
        queue.withLock { queued in
            queued.append(task)
            hasTasks.store(true, ordering: .sequentiallyConsistent)
        }
        // Pairs with `prepareToSleep`: either the loop sees the task before
        // it sleeps, or this sees it asleep and wakes it.
        if sleeping.load(ordering: .sequentiallyConsistent) { wake() }
    }

    func wake() {
        // Coalesce: one eventfd write until the loop drains it.
        if pendingWake.exchange(true, ordering: .acquiringAndReleasing) { return }
        SystemCalls.signalEventFD(wakeFD)
    }

    /// Whether tasks wait for the loop (a relaxed look, once per iteration).
    var hasQueuedTasks: Bool { hasTasks.load(ordering: .relaxed) }

    /// Called by the loop just before it blocks: false, and the loop must
    /// not block, when a task or a stop arrived meanwhile.
    func prepareToSleep() -> Bool {
        sleeping.store(true, ordering: .sequentiallyConsistent)
        if hasTasks.load(ordering: .sequentiallyConsistent) || isStopRequested {
            sleeping.store(false, ordering: .relaxed)
            return false
        }
        return true
    }

    /// Called by the loop once its wait returned.
    func awake() {
        sleeping.store(false, ordering: .relaxed)
    }

    /// Takes every queued task. `eventFDFired`: the loop's epoll set
    /// reported the wake fd, which must then be read even if the write
    /// that made it readable raced with an earlier drain.
    func drain(into tasks: inout [Task], eventFDFired: Bool) {
        if eventFDFired || pendingWake.load(ordering: .relaxed) {
            SystemCalls.drainEventFD(wakeFD)
            pendingWake.store(false, ordering: .releasing)
        }
        queue.withLock { queued in
            hasTasks.store(false, ordering: .relaxed)
            swap(&queued, &tasks)
        }
    }
}
