import CEvplLinux
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// The thread-safe face of an ``EventLoop``: the only way other threads
/// reach a loop. It stops the loop and queues work onto it, waking it
/// through an eventfd when it sleeps.
///
/// `EventLoop` itself is not `Sendable`; hand out its `remote` instead.
public final class EventLoopRemote: Sendable {
    enum Task: Sendable {
        case run(@Sendable (EventLoop) -> Void)
        case accepted(fd: Int32, peer: SocketAddress?, listenerID: UInt64)
        case job(LoopJob)
    }

    let wakeFD: Int32
    private let queue = Locked<[Task]>([])
    private let stopFlag = Atomic<Bool>(false)
    private let pendingWake = Atomic<Bool>(false)

    init() throws(EvplError) {
        let fd = SystemCalls.eventfd(0, Int32(EFD_NONBLOCK | EFD_CLOEXEC))
        guard fd >= 0 else { throw EvplError.lastErrno("eventfd") }
        wakeFD = fd
    }

    deinit {
        SystemCalls.close(wakeFD)
        for task in queue.withLock({ $0 }) {
            if case .accepted(let fd, _, _) = task { SystemCalls.close(fd) }
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
        queue.withLock { $0.append(task) }
        wake()
    }

    func wake() {
        // Coalesce: one eventfd write until the loop drains it.
        if pendingWake.exchange(true, ordering: .acquiringAndReleasing) { return }
        SystemCalls.signalEventFD(wakeFD)
    }

    /// Takes every queued task; called by the loop when its wake fd fires.
    func drain(into tasks: inout [Task]) {
        SystemCalls.drainEventFD(wakeFD)
        pendingWake.store(false, ordering: .releasing)
        queue.withLock { queued in
            swap(&queued, &tasks)
        }
    }
}
