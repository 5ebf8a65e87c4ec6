import CEvplLinux
import CURing
#if canImport(Glibc)
import Glibc
#endif

/// One loop's io_uring, and, once it exists, the loop's way of waiting.
///
/// Set up with `SINGLE_ISSUER | DEFER_TASKRUN | TASKRUN_FLAG` (only the loop's
/// thread submits, and completions are produced when that thread asks for
/// them), a registered ring fd, and a CQ sized for the multishot completions
/// of every connection on the loop.
///
/// The loop's epoll set is watched from the ring by a multishot `POLL_ADD`
/// on the epoll fd, so a loop with a ring waits in one place: ``wait(timeoutNanoseconds:)``
/// submits everything queued during the iteration and, when the loop is
/// idle, sleeps for completions in the same `io_uring_enter`. While the loop
/// polls, ``reap()`` reads the CQ from shared memory and enters the kernel
/// only when the ring flags say completions are waiting there, and
/// `epoll_wait` runs only when the ring reports the epoll set ready: a busy
/// pass costs no syscall at all.
final class URing {
    let ring: UnsafeMutablePointer<io_uring>
    private(set) var buffers: ProvidedBuffers!
    private unowned(unsafe) let loop: EventLoop
    private var epollWatch: EpollWatch!
    /// The epoll set reported readiness since the loop last looked.
    private var epollReady = false
    private let batch: UnsafeMutablePointer<io_uring_cqe>
    private static let batchSize = 256
    private let usesSQPoll: Bool
    /// `io_uring_queue_init` succeeded: the ring must be torn down.
    private var ringSetUp = false
    /// Pool slabs registered as fixed buffers, once a block device needs them.
    var fixedBufferTable: URingFixedBuffers?
    #if EVPL_FAULT_INJECTION
    /// Where in the SQ the fault plan last looked (see `applyFaultPlan`).
    var faultScanPosition: UInt32 = 0
    #endif

    init(loop: EventLoop) throws(EvplError) {
        self.loop = loop
        let config = loop.config
        ring = .allocate(capacity: 1)
        ring.initialize(to: io_uring())
        batch = .allocate(capacity: Self.batchSize)
        var params = io_uring_params()
        params.cq_entries = UInt32(config.ioUringCompletionEntries)
        usesSQPoll = config.ioUringSQPoll
        if usesSQPoll {
            params.flags = IORING_SETUP_SQPOLL | IORING_SETUP_CQSIZE | IORING_SETUP_SUBMIT_ALL
            params.sq_thread_idle = 50
        } else {
            params.flags = IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN | IORING_SETUP_TASKRUN_FLAG
                | IORING_SETUP_CQSIZE | IORING_SETUP_SUBMIT_ALL
        }
        // Every stored property is initialized from here on, so a throw
        // runs `deinit`, which alone releases what was set up (releasing
        // here as well would free the ring twice).
        let status = SystemCalls.uringSetup(UInt32(config.ioUringEntries), ring, &params)
        guard status == 0 else {
            throw EvplError(errno: -status, operation: "io_uring_queue_init", context: "\(config.ioUringEntries) entries")
        }
        ringSetUp = true
        cevpl_uring_mapped()
        _ = io_uring_register_ring_fd(ring)
        buffers = try ProvidedBuffers(uring: self, pool: loop.bufferPool, entries: config.ioUringBufferRingEntries, group: 0)
        epollWatch = EpollWatch(uring: self)
        watchEpoll()
    }

    deinit {
        if ringSetUp { abandonOperationsInFlight() }
        buffers = nil
        fixedBufferTable = nil
        if ringSetUp {
            cevpl_uring_unmapping()
            io_uring_queue_exit(ring)
        }
        ring.deallocate()
        batch.deallocate()
    }

    /// Marks the completion of the cancel `abandonOperationsInFlight` submits
    /// (below 16, so no operation target has it).
    private static let abandonMarker: UInt64 = 0xF

    /// For a ring going away: cancels every operation still in flight and
    /// drops the reference each holds on its target, without completing it
    /// (nothing may run for a loop that is going away). Operations the kernel
    /// cancels complete before the cancel does (with a submission-polling
    /// thread, shortly after); what is left after it (a block transfer
    /// already at the device) keeps its target.
    private func abandonOperationsInFlight() {
        var entry = io_uring_get_sqe(ring)
        if entry == nil {
            _ = io_uring_submit(ring)
            entry = io_uring_get_sqe(ring)
        }
        guard let entry else { return }
        io_uring_prep_cancel64(entry, 0, Int32(IORING_ASYNC_CANCEL_ANY | IORING_ASYNC_CANCEL_ALL))
        entry.pointee.user_data = Self.abandonMarker
        // Another thread than the ring's own cannot submit (SINGLE_ISSUER): leave it.
        guard io_uring_submit(ring) >= 0 else { return }
        var cancelDone = false
        while true {
            var completion: UnsafeMutablePointer<io_uring_cqe>?
            if cancelDone && usesSQPoll {
                // The kernel's submission thread may post a cancelled
                // operation's completion after the cancel's own: give
                // stragglers a moment (LeakSanitizer caught the epoll watch's).
                var timeout = __kernel_timespec(tv_sec: 0, tv_nsec: 5_000_000)
                guard io_uring_wait_cqe_timeout(ring, &completion, &timeout) == 0, let completion else { return }
                abandon(completion.pointee)
            } else if cancelDone {
                guard io_uring_peek_cqe(ring, &completion) == 0, let completion else { return }
                abandon(completion.pointee)
            } else {
                var timeout = __kernel_timespec(tv_sec: 1, tv_nsec: 0)
                guard io_uring_wait_cqe_timeout(ring, &completion, &timeout) == 0, let completion else { return }
                if completion.pointee.user_data == Self.abandonMarker { cancelDone = true } else { abandon(completion.pointee) }
            }
            io_uring_cqe_seen(ring, completion)
        }
    }

    /// Drops what one completion of an abandoned operation holds.
    private func abandon(_ completion: io_uring_cqe) {
        if completion.flags & IORING_CQE_F_BUFFER != 0 {
            buffers.claim(UInt16(truncatingIfNeeded: completion.flags >> UInt32(IORING_CQE_BUFFER_SHIFT)),
                          flags: completion.flags, result: completion.res)?.release()
        }
        guard completion.flags & IORING_CQE_F_MORE == 0 else { return }
        URingOperationTarget.abandon(userData: completion.user_data)
    }

    /// A free submission entry; submits what is queued first when the SQ is full.
    func submissionEntry() -> UnsafeMutablePointer<io_uring_sqe> {
        if let entry = io_uring_get_sqe(ring) { return entry }
        submit()
        if let entry = io_uring_get_sqe(ring) { return entry }
        // SUBMIT_ALL consumed every entry unless the kernel is out of memory:
        // wait for completions to make room.
        applyFaultPlan()
        _ = io_uring_submit_and_wait(ring, 1)
        return io_uring_get_sqe(ring)!
    }

    /// Whether the kernel holds completions that only an `io_uring_enter`
    /// will post (deferred task work, or an overflowed CQ).
    @inline(__always)
    private var completionsWaitInKernel: Bool {
        cevpl_uring_sq_flags(ring) & (IORING_SQ_TASKRUN | IORING_SQ_CQ_OVERFLOW) != 0
    }

    /// Whether the loop must not sleep: completions to reap, or an epoll set
    /// to look at. (Queued submissions do not count: the wait submits them.)
    var hasWork: Bool {
        epollReady || io_uring_cq_ready(ring) > 0 || completionsWaitInKernel
    }

    /// Submits what the iteration queued and collects deferred completions;
    /// with a non-zero timeout (nanoseconds, negative for none), also sleeps
    /// until a completion arrives, in the same `io_uring_enter`.
    func wait(timeoutNanoseconds: Int64) {
        if timeoutNanoseconds == 0 {
            submit()
            return
        }
        buffers.refill()
        applyFaultPlan()
        #if EVPL_FAULT_INJECTION
        if let code = FaultPlan.failure(of: .uringEnter) {
            check(-code, "io_uring_enter")
            return
        }
        #endif
        var completion: UnsafeMutablePointer<io_uring_cqe>?
        let status: Int32
        if timeoutNanoseconds < 0 {
            status = io_uring_submit_and_wait_timeout(ring, &completion, 1, nil, nil)
        } else {
            var timeout = __kernel_timespec(tv_sec: timeoutNanoseconds / 1_000_000_000, tv_nsec: timeoutNanoseconds % 1_000_000_000)
            status = io_uring_submit_and_wait_timeout(ring, &completion, 1, &timeout, nil)
        }
        check(status, "io_uring_enter")
    }

    /// Surfaces an unexpected failure of the ring to the loop, which stops
    /// (retrying would spin on the same error for ever). A timeout, a
    /// signal, and a full CQ (handled by reaping) are expected.
    @inline(__always)
    private func check(_ status: Int32, _ operation: String) {
        guard status < 0 else { return }
        switch -status {
        case ETIME, EINTR, EAGAIN, EBUSY: return
        default: loop.fail(EvplError(errno: -status, operation: operation, context: "loop \(loop.loopConfig.name)"))
        }
    }

    /// Whether the epoll set reported readiness since the last call.
    func takeEpollReadiness() -> Bool {
        defer { epollReady = false }
        return epollReady
    }

    /// Asks for another look at the epoll set next iteration: the last one
    /// found events, and level-triggered ones or a full batch may remain.
    func noteEpollBusy() {
        epollReady = true
    }

    fileprivate func epollBecameReady() {
        epollReady = true
    }

    /// Arms the multishot poll on the loop's epoll fd.
    fileprivate func watchEpoll() {
        let entry = submissionEntry()
        io_uring_prep_poll_multishot(entry, loop.epoll.fd, UInt32(POLLIN))
        entry.pointee.user_data = epollWatch.userData(for: 1)
    }

    /// Submits every queued entry and collects deferred completions, in one
    /// `io_uring_enter`; nothing when there is nothing to do.
    func submit() {
        guard io_uring_sq_ready(ring) > 0 || completionsWaitInKernel else { return }
        // Receives re-armed after ENOBUFS must find the ring refilled.
        buffers.refill()
        applyFaultPlan()
        while true {
            let status = io_uring_submit_and_get_events(ring)
            if status >= 0 { return }
            if status != -EINTR && status != -EAGAIN && status != -EBUSY {
                check(status, "io_uring_submit")
                return
            }
            if status == -EBUSY || status == -EAGAIN {
                // The CQ is full: make room by handling completions, then retry.
                _ = reap()
            }
        }
    }

    /// Pushes the queued entries to the kernel now, without waiting and
    /// without handling completions, so an operation's start may call it;
    /// entries the kernel cannot take yet go in with the loop's next wait.
    func submitNow() {
        // Receives re-armed after ENOBUFS must find the ring refilled.
        buffers.refill()
        applyFaultPlan()
        check(io_uring_submit(ring), "io_uring_submit")
    }

    /// Handles the completions available, at most a few batches so the
    /// rest of the iteration gets its turn (what is left keeps the loop from
    /// sleeping). Empty buffer-ring slots are refilled after each batch.
    /// Returns whether there were any.
    func reap() -> Bool {
        var any = false
        for _ in 0..<Self.batchesPerReap {
            let flags = cevpl_uring_sq_flags(ring)
            if flags & IORING_SQ_CQ_OVERFLOW != 0 { loop.statistics.completionQueueOverflows &+= 1 }
            if flags & (IORING_SQ_TASKRUN | IORING_SQ_CQ_OVERFLOW) != 0 { _ = io_uring_get_events(ring) }
            let count = Int(cevpl_uring_take_cqes(ring, batch, UInt32(Self.batchSize)))
            if count == 0 { break }
            any = true
            for index in 0..<count {
                let completion = batch[index]
                var received: IOVec?
                if completion.flags & IORING_CQE_F_BUFFER != 0 {
                    received = buffers.claim(UInt16(truncatingIfNeeded: completion.flags >> UInt32(IORING_CQE_BUFFER_SHIFT)),
                                             flags: completion.flags, result: completion.res)
                }
                URingOperationTarget.dispatch(completion, received: received)
            }
            buffers.refill()
        }
        return any
    }

    private static let batchesPerReap = 4

    /// Cancels every operation on `fd` and submits at once, so that the
    /// caller may close `fd` right after: operations already issued hold the
    /// file until they complete (with `-ECANCELED` when cancelled), and none
    /// is left to resolve the number, which a new socket may reuse, later.
    /// The cancellation's own completion is skipped on success.
    func cancelOperations(on fd: Int32) {
        let entry = submissionEntry()
        io_uring_prep_cancel_fd(entry, fd, IORING_ASYNC_CANCEL_ALL)
        entry.pointee.user_data = 0
        entry.pointee.flags |= UInt8(CEVPL_IOSQE_CQE_SKIP_SUCCESS)
        submit()
    }
}

/// Receives the multishot poll completions of the loop's epoll fd.
private final class EpollWatch: URingOperationTarget {
    private unowned(unsafe) let uring: URing

    init(uring: URing) {
        self.uring = uring
    }

    override func complete(_ operation: UInt8, result: Int32, flags: UInt32, received: IOVec?) {
        received?.release()
        uring.epollBecameReady()
        if flags & IORING_CQE_F_MORE == 0 { uring.watchEpoll() }
    }
}

extension EventLoop {
    /// The loop's io_uring, created on first use.
    func ioURing() throws(EvplError) -> URing {
        if let uring { return uring }
        let created = try URing(loop: self)
        uring = created
        return created
    }
}
