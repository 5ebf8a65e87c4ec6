import CEvplLinux
import Logging
#if canImport(Glibc)
import Glibc
#endif

/// One event loop: owns every object created on it and runs all of their
/// callbacks on a single thread.
///
/// An iteration fires expired timers, polls epoll (or, once the loop has an
/// io_uring, submits and reaps the ring, which also watches the epoll set),
/// runs deferrals and flushes queued sends. The **hybrid wait** then decides
/// how to wait: poll again at once (spin), or sleep in `epoll_wait` or
/// `io_uring_enter` until the next timer or event. The ``WaitPolicy``
/// (``EvplConfig/waitPolicy``) makes the choice: by default the loop spins
/// for a while after any activity, so that a busy loop never pays a
/// wake-up, and sleeps after it, so that an idle one uses no CPU.
/// ``pin()`` forces polling.
///
/// `EventLoop` is not `Sendable`. Other threads reach it through ``remote``.
public final class EventLoop {
    /// Global settings this loop was created with.
    public let config: EvplConfig
    /// ``EvplConfig/logger`` with this loop's name as `evpl-loop` metadata.
    public let logger: Logger
    /// Per-loop settings.
    public let loopConfig: LoopConfig
    /// This loop's buffer pool.
    public let bufferPool: BufferPool
    /// The thread-safe handle for stopping the loop and queueing work on it.
    public let remote: EventLoopRemote
    /// The loop as a Swift concurrency executor: tasks that prefer it and
    /// actors that adopt it run on this loop's thread. `Sendable`.
    public let executor: EventLoopExecutor

    let ownerThread: pthread_t
    /// The descriptors the loop watches.
    @exclusivity(unchecked) var epoll: EpollSet
    @exclusivity(unchecked) var timers = TimerHeap()
    @exclusivity(unchecked) var armedDeferrals = IterationQueue<Deferral>()
    @exclusivity(unchecked) var pendingFlush = IterationQueue<Connection>()
    @exclusivity(unchecked) var pendingReads = IterationQueue<PollSource>()
    @exclusivity(unchecked) var pendingDisconnects: [Connection] = []
    @exclusivity(unchecked) var pendingDatagramFlush = IterationQueue<DatagramEndpoint>()
    /// Every open connection of the loop (touched when one opens or closes).
    var connections = ConnectionRegistry()
    /// Block requests submitted on this loop and not yet completed.
    @exclusivity(unchecked) var blockRequestsPending = 0
    /// Set while a graceful shutdown runs.
    @exclusivity(unchecked) var gracefulShutdown: GracefulShutdown?
    /// Connections paused because the pool reached its receive limit.
    @exclusivity(unchecked) var memoryWaiters = IterationQueue<Connection>()
    /// Wakes the loop to look at the shared budget while anything waits for memory.
    private var memoryRetryTimer: EvplTimer?
    /// When idle connections last gave their fill buffers back.
    private var lastReclaim: UInt64 = 0
    /// The timer of the pool's next trim, kept between trims.
    private var poolTrimTimer: EvplTimer?
    /// Connections closed since the heap was last trimmed.
    private var closedSinceHeapTrim = 0
    /// The heap was trimmed after a wave whose last connections are still open.
    private var heapWaveEnding = false
    private var heapTrimScheduled = false
    /// Datagram endpoints that could not take the buffers a receive needs.
    @exclusivity(unchecked) var datagramMemoryWaiters: [DatagramEndpoint] = []
    /// The io_uring side of every datagram endpoint bound here, weakly: an
    /// endpoint may outlive its loop, but the pool buffers it holds may not.
    var uringDatagrams: [WeakURingDatagram] = []
    var attachments: [UInt64: ListenerAttachment] = [:]
    @exclusivity(unchecked) var remoteTasks: [EventLoopRemote.Task] = []
    /// Where other loops give back this pool's buffers they borrowed.
    let bufferReturns: BufferReturns
    /// The buffers given back, taken out of ``bufferReturns`` to release.
    var returnedBuffers: [Buffer] = []
    /// The loop's io_uring, created by the first io_uring object on the loop.
    var uring: URing?
    /// The handshake and idle deadlines of the loop's connections.
    private(set) lazy var deadlines = ConnectionDeadlines(loop: self)
    let iovecScratch: UnsafeMutablePointer<iovec>
    private var remoteToken: UInt64 = 0
    /// Decides after each iteration whether the next polls or sleeps.
    @exclusivity(unchecked) private var hybridWait: HybridWait
    private var pinCount = 0
    /// When the last iteration ended and when the epoll set was last polled.
    private var lastIterationEnd: UInt64 = 0
    private var lastEpollPoll: UInt64 = 0
    private var nextTimeoutNanoseconds: Int64 = 0
    /// The deadline of the sleep the wait policy chose last, 0 for none.
    private var sleepDeadline: UInt64 = 0
    /// What the wait policy wants told, copied out of it so that the
    /// iteration reads two flags rather than the policy's whole state.
    private let wakeStartsBusyPeriod: Bool
    private let learnsFromWakes: Bool
    /// The clock as ``fireExpiredTimers()`` last read it (this iteration's,
    /// whenever a timer is scheduled).
    @exclusivity(unchecked) var timersCheckedAt: UInt64 = 0
    private var stopRequestedLocally = false

    /// The unexpected error that stopped the loop, if one did: ``run()``
    /// returns and ``runOnce()`` does nothing from then on.
    @exclusivity(unchecked) public private(set) var failure: EvplError?
    /// Called once, on the loop's thread, with the error that stops the loop.
    public var onFailure: ((EvplError) -> Void)?

    /// Statistics about how the loop has waited, for tests and tuning.
    @exclusivity(unchecked) public internal(set) var statistics = Statistics()

    /// Counters describing the loop's work and waits.
    public struct Statistics: Sendable, Hashable {
        /// Full iterations run.
        public var iterations: UInt64 = 0
        /// Iterations that ended in a blocking wait.
        public var sleeps: UInt64 = 0
        /// Iterations that polled without sleeping.
        public var spins: UInt64 = 0
        /// io_uring receives that found the provided-buffer ring empty
        /// (`ENOBUFS`) and were re-armed once it was refilled.
        public var receiveBufferShortages: UInt64 = 0
        /// io_uring sends that went out with `SENDMSG_ZC`.
        public var zeroCopySends: UInt64 = 0
        /// Block reads and writes issued on pool memory registered with the
        /// ring (`READ_FIXED`/`WRITE_FIXED`).
        public var fixedBufferTransfers: UInt64 = 0
        /// Times the io_uring CQ was found overflowed (the kernel kept the
        /// extra completions and the loop collected them).
        public var completionQueueOverflows: UInt64 = 0
        /// Times a connection stopped receiving (paused by the application,
        /// by its send high watermark, or by the pool's ceiling).
        public var receivePauses: UInt64 = 0
        /// Of those, pauses because the buffer pool reached its receive limit.
        public var memoryPauses: UInt64 = 0
        /// Block reads and writes started again after the kernel did part of
        /// them (a short count) or was interrupted (`EINTR`, `EAGAIN`).
        public var blockTransfersContinued: UInt64 = 0
        /// Accepted connections closed at once because the pool or the
        /// process budget was exhausted with connections already waiting
        /// for memory (see ``MemoryBudget``).
        public var admissionRefusals: UInt64 = 0
        /// Empty fill buffers taken back from idle connections at the pool's
        /// ceiling, so that memory goes to connections with bytes to hold.
        public var buffersReclaimed: UInt64 = 0
        /// Connections ended because their handshake took longer than
        /// ``ConnectionTimeouts/handshake``.
        public var handshakeTimeouts: UInt64 = 0
        /// Connections ended because they stayed silent longer than
        /// ``ConnectionTimeouts/idle``.
        public var idleTimeouts: UInt64 = 0
        /// Connections ended because a message took longer than the
        /// deadline ``Connection/setMessageDeadline(after:)`` gave it.
        public var messageTimeouts: UInt64 = 0
    }

    /// Creates a loop on the calling thread, which becomes its owner.
    ///
    /// - Parameters:
    ///   - config: global settings; `nil` uses the defaults with `EVPL_*`
    ///     environment overrides.
    ///   - loopConfig: name and CPU affinity. A non-nil affinity pins the
    ///     calling thread.
    /// - Throws: ``EvplError`` for invalid configuration or when the epoll set
    ///   or wake-up eventfd cannot be created.
    public init(config: EvplConfig? = nil, loopConfig: LoopConfig = LoopConfig()) throws(EvplError) {
        let resolved: EvplConfig
        if let config { resolved = config } else { resolved = try EvplConfig.fromProcessEnvironment() }
        try resolved.validate()
        if let cpus = loopConfig.cpuAffinity {
            let status = cpus.map { Int32(truncatingIfNeeded: $0) }.withUnsafeBufferPointer { cevpl_set_affinity($0.baseAddress, Int32($0.count)) }
            if status != 0 {
                throw EvplError(errno: status, operation: "set CPU affinity", context: "\(cpus)")
            }
        }
        self.config = resolved
        self.loopConfig = loopConfig
        var logger = resolved.logger
        logger[metadataKey: "evpl-loop"] = "\(loopConfig.name)"
        self.logger = logger
        self.bufferPool = BufferPool(bufferSize: resolved.bufferSize, buffersPerSlab: resolved.buffersPerSlab,
                                     maxBytes: resolved.poolMaxBytes, idleBytesKept: resolved.poolIdleBytes, budget: resolved.memoryBudget)
        self.remote = try EventLoopRemote()
        self.bufferReturns = BufferReturns()
        bufferPool.lendingReturns = bufferReturns
        self.epoll = try EpollSet(capacity: resolved.maxEventsPerPoll)
        if resolved.waitPolicy == .adaptive {
            // Its sleeps end just before an expected arrival: the kernel's
            // default slack would fire them up to 50 us late.
            _ = cevpl_set_timer_slack(1_000)
        }
        let hybridWait = HybridWait(policy: resolved.waitPolicy, spinNanoseconds: resolved.spinNanoseconds, spinYields: resolved.spinYields,
                                    idleSpinShare: resolved.idleSpinShare)
        self.hybridWait = hybridWait
        wakeStartsBusyPeriod = hybridWait.wakeStartsBusyPeriod
        learnsFromWakes = hybridWait.policy == .adaptive
        self.ownerThread = pthread_self()
        self.executor = EventLoopExecutor(remote: remote, ownerThread: ownerThread, logger: logger)
        self.iovecScratch = .allocate(capacity: Int(cevpl_iov_max()))
        self.remoteToken = try register(fd: remote.wakeFD, events: UInt32(EPOLLIN.rawValue), source: RemoteWakeSource(loop: self))
        bufferPool.trimScheduler = { [unowned self] in schedulePoolTrim() }
        executor.loop = self
        becomeCurrent()
        logger.debug("loop ready", metadata: ["buffer-size": "\(resolved.bufferSize)", "wait": "\(resolved.waitPolicy)", "spin-ns": "\(resolved.spinNanoseconds)"])
    }

    deinit {
        executor.loopEnded()
        // Connections still open lose their sockets without further events:
        // nothing can run on a loop that is going away.
        for connection in connections.all() {
            connection.abandon()
        }
        // The ring cancels what is still in flight and lets go of it.
        uring = nil
        for deferral in armedDeferrals.queued where deferral.isArmed && deferral.runsWhenLoopEnds {
            deferral.isArmed = false
            deferral.handler(deferral)
        }
        // Endpoints that outlive the loop give back the buffers they kept
        // for their next receive while the pool is still here.
        for index in uringDatagrams.indices { uringDatagrams[index].datagram?.releaseIdleReceiveBuffers() }
        epoll.close()
        iovecScratch.deallocate()
    }

    // MARK: Running

    /// Runs iterations until ``stop()`` or ``EventLoopRemote/stop()``, or
    /// until the loop fails (see ``failure``).
    public func run() {
        checkLoopThread()
        stopRequestedLocally = false
        while !stopRequestedLocally && !remote.isStopRequested && failure == nil {
            runOnce()
        }
        stopRequestedLocally = false
        remote.clearStop()
    }

    /// Runs one iteration. It may block in `epoll_wait` when the hybrid-wait
    /// policy decides the loop is idle, at most until the next timer.
    public func runOnce() {
        checkLoopThread()
        guard failure == nil else { return }
        becomeCurrent()
        statistics.iterations &+= 1
        let timersFired = fireExpiredTimers()
        var active = false
        let mustPoll = timersFired || hasPendingWork || pinCount > 0 || (uring?.hasWork ?? false)
        var timeout = mustPoll ? 0 : boundedByTimers(nextTimeoutNanoseconds)
        if timeout != 0 && !remote.prepareToSleep() { timeout = 0 }
        if timeout != 0 { statistics.sleeps &+= 1 } else { statistics.spins &+= 1 }
        if let uring {
            // The ring is the wait; the epoll set reports through it.
            uring.wait(timeoutNanoseconds: timeout)
            if uring.reap() { active = true }
            if uring.takeEpollReadiness() && poll(timeoutNanoseconds: 0) {
                active = true
                uring.noteEpollBusy()
            }
        } else if timeout == 0 && hasPendingWork && lastIterationEnd &- lastEpollPoll < Self.epollPollInterval {
            // Work queued inside the loop keeps it busy: look at the epoll
            // set at most every few microseconds instead of every pass.
        } else if timeout == 0 && epoll.count == 1 {
            // Only the remote queue's eventfd is watched, and a polling
            // loop sees its tasks without it (in-process streams, executor
            // jobs): a pass costs no system call.
        } else {
            lastEpollPoll = lastIterationEnd
            if poll(timeoutNanoseconds: timeout) { active = true }
        }
        if timeout != 0 {
            remote.awake()
            if sleepDeadline != 0 { noteWake() }
            if wakeStartsBusyPeriod { active = true }
        }
        if remote.hasQueuedTasks {
            handleRemoteWake(eventFDFired: false)
            active = true
        }
        if bufferReturns.hasPending { takeBackReturnedBuffers() }
        if processPendingReads() { active = true }
        if executor.runReadyJobs() { active = true }
        if runDeferrals() { active = true }
        if flushPendingSends() { active = true }
        if deliverPendingDisconnects() { active = true }
        if (!memoryWaiters.isEmpty || !datagramMemoryWaiters.isEmpty) && bufferPool.hasRoom { resumeMemoryWaiters() }
        if gracefulShutdown != nil { continueGracefulShutdown() }
        deliverOwedEdges()
        decideNextWait(active: active || timersFired, timersOnly: timersFired && !active)
    }

    // MARK: Pool memory

    /// Pauses `connection`'s receiving until the pool has room again.
    package func waitForMemory(_ connection: Connection) {
        guard !connection.receivePauses.contains(.memory) else { return }
        statistics.memoryPauses &+= 1
        connection.pauseReceiving(.memory)
        memoryWaiters.append(connection)
        watchForMemory()
        reclaimIdleBuffers()
    }

    /// Calls `connection` back (``Connection/memoryReturned()``) once the
    /// pool has room, without pausing its receiving: bytes sent during a
    /// TLS handshake wait for room to be encrypted in, and a connection
    /// with nothing queued has no write to come back for them.
    func waitForMemoryToSend(_ connection: Connection) {
        memoryWaiters.append(connection)
        watchForMemory()
    }

    /// At the ceiling, takes back the empty fill buffers idle connections
    /// keep for their next read or send: a connection is charged for what
    /// it holds, not for a whole buffer it might use. At most once per
    /// ``reclaimInterval``: it visits every connection. True when it freed
    /// a buffer.
    @discardableResult
    func reclaimIdleBuffers() -> Bool {
        let now = MonotonicClock.nanoseconds()
        guard now &- lastReclaim >= Self.reclaimInterval else { return false }
        lastReclaim = now
        let before = bufferPool.buffersInUse
        for connection in connections.all() { connection.releaseIdleBuffers() }
        // Heap memory freed under the same pressure (the arena of this
        // loop's thread included) goes back too.
        _ = cevpl_malloc_trim()
        let reclaimed = max(0, before - bufferPool.buffersInUse)
        statistics.buffersReclaimed &+= UInt64(reclaimed)
        return reclaimed > 0
    }

    /// The shortest time between two ``reclaimIdleBuffers()`` passes.
    static let reclaimInterval: UInt64 = 50_000_000

    /// While anything waits for memory, looks again every few
    /// milliseconds: memory another loop gives back to the shared budget
    /// wakes nobody here, and idle connections may have fill buffers to
    /// give back since the last reclaim.
    private func watchForMemory() {
        guard memoryRetryTimer == nil else { return }
        memoryRetryTimer = try? addTimer(every: .milliseconds(10)) { [unowned self] _ in
            guard memoryWaiters.isEmpty && datagramMemoryWaiters.isEmpty else {
                if !bufferPool.hasRoom { reclaimIdleBuffers() }
                return
            }
            memoryRetryTimer?.cancel()
            memoryRetryTimer = nil
        }
    }

    /// Whether a new connection should be turned away: the pool (or the
    /// process budget) is exhausted and connections already wait for
    /// memory, so it could only join the stall.
    var refusesConnections: Bool {
        !memoryWaiters.isEmpty && !bufferPool.hasRoom
    }

    /// Stops `endpoint` receiving until the pool has `buffers` free (a
    /// datagram receive needs room for the largest datagram at once).
    func waitForMemory(_ endpoint: DatagramEndpoint, buffers: Int) {
        guard endpoint.buffersAwaited == 0 else { return }
        statistics.memoryPauses &+= 1
        endpoint.buffersAwaited = max(1, buffers)
        datagramMemoryWaiters.append(endpoint)
        watchForMemory()
    }

    /// Resumes the waiters once a buffer is free: a socket read takes one
    /// for the data waiting, and an empty provided-buffer ring always gets
    /// one, so every waiting connection makes progress. A datagram endpoint
    /// resumes once the pool has room for a whole receive.
    private func resumeMemoryWaiters() {
        if memoryWaiters.beginBatch() {
            for index in memoryWaiters.batch.indices { memoryWaiters.batch[index].memoryReturned() }
            memoryWaiters.endBatch()
        }
        guard !datagramMemoryWaiters.isEmpty else { return }
        let waiting = datagramMemoryWaiters
        datagramMemoryWaiters.removeAll(keepingCapacity: true)
        for endpoint in waiting where !endpoint.isClosed {
            if bufferPool.availableBuffers >= endpoint.buffersAwaited {
                endpoint.buffersAwaited = 0
                endpoint.receiveAgain()
            } else {
                datagramMemoryWaiters.append(endpoint)
            }
        }
    }

    /// Trims the pool a second from now: what is still free then was idle.
    /// One timer, made on first use and restarted after, so that the trims
    /// of a long run allocate nothing.
    private func schedulePoolTrim() {
        if let poolTrimTimer {
            poolTrimTimer.restart()
        } else {
            poolTrimTimer = try? addTimer(every: .seconds(1)) { [unowned self] timer in
                timer.cancel()
                bufferPool.trim()
            }
        }
    }

    // MARK: Failure

    /// Stops the loop for good after an unexpected failure of its wait
    /// (`epoll_wait`, `io_uring_enter`): written once to standard error,
    /// passed to ``onFailure``, and delivered to every connection as its
    /// `disconnected` error. A failure that every pass would hit again is
    /// never retried in a silent spin.
    func fail(_ error: EvplError) {
        guard failure == nil else { return }
        failure = error
        var line = "evpl: loop \(loopConfig.name) stopped: \(error)\n"
        line.withUTF8 { _ = Glibc.write(STDERR_FILENO, $0.baseAddress, $0.count) }
        onFailure?(error)
        for connection in connections.all() { connection.tearDown(error: error) }
        while deliverPendingDisconnects() {}
        stop()
    }

    /// Asks the loop to return from ``run()`` after the current iteration.
    /// From another thread, call ``EventLoopRemote/stop()`` on ``remote``.
    public func stop() {
        stopRequestedLocally = true
    }

    /// Keeps the loop polling without sleeping until a matching ``unpin()``.
    /// Pins are counted.
    public func pin() { pinCount += 1 }

    /// Releases one ``pin()``.
    public func unpin() {
        precondition(pinCount > 0, "unpin without pin")
        pinCount -= 1
    }

    /// Whether the loop will poll without sleeping on its next iteration.
    public var isPolling: Bool { nextTimeoutNanoseconds == 0 || pinCount > 0 || hasPendingWork }

    /// Work queued since the last wait was decided (between iterations).
    private var hasPendingWork: Bool {
        !armedDeferrals.isEmpty || executor.hasReadyJobs || !pendingReads.isEmpty || !pendingDisconnects.isEmpty
            || !pendingFlush.isEmpty || !pendingDatagramFlush.isEmpty
    }

    /// `timeout`, shortened to the earliest timer (one may have been added since it was decided).
    private func boundedByTimers(_ timeout: Int64) -> Int64 {
        let deadline = timers.nextDeadline
        guard timeout != 0, deadline != .max else { return timeout }
        // With a timer scheduled, fireExpiredTimers has just read the clock.
        let now = timersCheckedAt
        let untilTimer = deadline > now ? Int64(deadline - now) : 0
        return timeout < 0 ? untilTimer : min(timeout, untilTimer)
    }

    /// While work queued inside the loop (deferrals, block completions)
    /// keeps it iterating, the epoll set is polled at most this often.
    private static let epollPollInterval: UInt64 = 5_000

    private func decideNextWait(active: Bool, timersOnly: Bool) {
        let now = MonotonicClock.nanoseconds()
        lastIterationEnd = now
        switch hybridWait.decide(now: now, active: active, timersOnly: timersOnly, hasWork: hasPendingWork || (uring?.hasWork ?? false),
                                 pinned: pinCount > 0, nextTimer: timers.nextDeadline) {
        case .poll:
            nextTimeoutNanoseconds = 0
        case .spin(let yield):
            nextTimeoutNanoseconds = 0
            if yield { sched_yield() }
        case .sleep(let deadline?):
            nextTimeoutNanoseconds = deadline > now ? Int64(deadline - now) : 0
            // Only the adaptive policy learns from how late a wake is.
            if learnsFromWakes { sleepDeadline = deadline }
        case .sleep(nil):
            nextTimeoutNanoseconds = -1
        }
    }

    /// After a sleep with a deadline: a wake at or past the deadline (no
    /// event came first) tells the wait policy how late a wake-up is here.
    private func noteWake() {
        let woke = MonotonicClock.nanoseconds()
        if woke >= sleepDeadline { hybridWait.recordWake(late: woke - sleepDeadline) }
        sleepDeadline = 0
    }

    /// Traps, in release builds too, when called off the loop's thread: a
    /// loop's objects are not thread-safe, and a second thread would
    /// corrupt them (an io_uring set up for a single issuer refuses it
    /// with an error on every pass). The check is one thread-pointer read.
    @inline(__always)
    func checkLoopThread() {
        if _slowPath(pthread_self() != ownerThread) {
            threadConfinementViolated("EventLoop used off its own thread: run async code on it with Task(executorPreference: loop.executor), and reach it from other threads with loop.remote.execute")
        }
    }

    // MARK: epoll

    func register(fd: Int32, events: UInt32, source: PollSource) throws(EvplError) -> UInt64 {
        try epoll.add(fd, events: events, source: source)
    }

    func modify(fd: Int32, events: UInt32, token: UInt64) throws(EvplError) {
        try epoll.modify(fd, events: events, token: token)
    }

    /// Forgets a source. Closing its fd removes it from the epoll set; pass
    /// `fd` when the fd stays open.
    func unregister(token: UInt64, fd: Int32? = nil) {
        epoll.remove(token: token, descriptor: fd)
    }

    private func poll(timeoutNanoseconds: Int64) -> Bool {
        let count = epoll.wait(timeoutNanoseconds: timeoutNanoseconds)
        if count < 0 && Glibc.errno != EINTR {
            fail(EvplError.lastErrno("epoll_wait", context: "loop \(loopConfig.name)"))
        }
        guard count > 0 else { return false }
        for index in 0..<count {
            let event = epoll.event(at: index)
            event.source?.handleEvents(event.events)
        }
        return true
    }

    // MARK: Work queued for the end of the iteration

    private func processPendingReads() -> Bool {
        guard pendingReads.beginBatch() else { return false }
        for index in pendingReads.batch.indices {
            pendingReads.batch[index].handleEvents(UInt32(EPOLLIN.rawValue))
        }
        pendingReads.endBatch()
        return true
    }

    private func flushPendingSends() -> Bool {
        var worked = false
        if pendingFlush.beginBatch() {
            worked = true
            for index in pendingFlush.batch.indices {
                let connection = pendingFlush.batch[index]
                connection.flushQueued = false
                connection.flush()
            }
            pendingFlush.endBatch()
        }
        if pendingDatagramFlush.beginBatch() {
            worked = true
            for index in pendingDatagramFlush.batch.indices {
                let endpoint = pendingDatagramFlush.batch[index]
                endpoint.flushQueued = false
                endpoint.flush()
            }
            pendingDatagramFlush.endBatch()
        }
        return worked
    }

    func deliverPendingDisconnects() -> Bool {
        guard !pendingDisconnects.isEmpty else { return false }
        var closed = 0
        while let connection = pendingDisconnects.popLast() {
            connection.completeDisconnect()
            closed += 1
        }
        returnHeapAfterWave(closed: closed)
        return true
    }

    /// After a wave of connections has gone (a thousand or more since the
    /// last trim, and more than are still open), gives the heap memory
    /// they held back to the kernel: glibc keeps freed memory below the top
    /// of the heap otherwise, and a server would stay at its peak after a
    /// flood. The wave's last connection gone, what its tail held goes back
    /// too. Counting closes, not a peak, holds however the wave comes: all
    /// at once, or while its first connections already leave.
    private func returnHeapAfterWave(closed: Int) {
        closedSinceHeapTrim += closed
        let open = connections.count
        if closedSinceHeapTrim >= Self.heapWave && open < closedSinceHeapTrim {
            closedSinceHeapTrim = 0
            heapWaveEnding = open > 0
            scheduleHeapTrim()
        } else if open == 0 && heapWaveEnding {
            closedSinceHeapTrim = 0
            heapWaveEnding = false
            scheduleHeapTrim()
        }
    }

    /// Trims the heap a moment from now: a closed connection's memory is
    /// freed only once the backend's last completions for it have come.
    private func scheduleHeapTrim() {
        guard !heapTrimScheduled else { return }
        heapTrimScheduled = true
        _ = try? addOneShotTimer(after: .milliseconds(200)) { [unowned self] _ in
            heapTrimScheduled = false
            _ = cevpl_malloc_trim()
        }
    }

    /// Connections closed since the last heap trim before another.
    private static let heapWave = 1024

    func handleRemoteWake(eventFDFired: Bool = true) {
        remote.drain(into: &remoteTasks, eventFDFired: eventFDFired)
        for index in remoteTasks.indices {
            switch remoteTasks[index] {
            case .run(let work):
                work(self)
            case .accepted(let fd, let peer, let listenerID):
                adoptAcceptedSocket(fd: fd, peer: peer, listenerID: listenerID)
            case .job(let job):
                executor.enqueueLocally(job)
            case .inProcessReady(let stream):
                stream.peerActed()
            case .inProcessAccepted(let stream, let listenerID):
                adoptInProcessStream(stream, listenerID: listenerID)
            }
        }
        remoteTasks.removeAllKeepingCapacity()
    }

    // MARK: Shutdown

    /// Closes every open connection on this loop, delivering each its
    /// `disconnected` event, and detaches from every listener. Thread pools
    /// call this when they stop; call it before dropping a loop you ran yourself.
    public func closeAll() {
        checkLoopThread()
        detachFromAllListeners()
        for connection in connections.all() {
            connection.close()
        }
        while deliverPendingDisconnects() || !pendingDisconnects.isEmpty {}
        handleRemoteWake()
        if bufferReturns.hasPending { takeBackReturnedBuffers() }
        becomeCurrent()
        runTasksUntilSuspended()
    }

    /// Runs the jobs of tasks on this loop until none is ready: tasks that
    /// the closes above woke see their errors and end, or wait on something
    /// else. A task that keeps yielding is given up on after a bound.
    private func runTasksUntilSuspended() {
        var rounds = 0
        while executor.runReadyJobs() || executor.hasReadyJobs {
            rounds += 1
            if rounds == Self.closingJobRounds {
                logger.warning("tasks on the loop still runnable after closing; leaving them queued", metadata: ["rounds": "\(rounds)"])
                return
            }
            while deliverPendingDisconnects() {}
            handleRemoteWake()
        }
    }

    /// How many rounds of jobs ``closeAll()`` runs at most.
    private static let closingJobRounds = 10_000
}

/// Wakes the loop's remote queue.
private final class RemoteWakeSource: PollSource {
    unowned let loop: EventLoop
    init(loop: EventLoop) { self.loop = loop }
    func handleEvents(_ events: UInt32) { loop.handleRemoteWake() }
}
