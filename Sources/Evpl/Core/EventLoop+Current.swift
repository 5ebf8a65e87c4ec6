import CEvplLinux

extension EventLoop {
    /// The loop running on the calling thread, or `nil` on a thread that
    /// runs none.
    ///
    /// Code in a task on a loop (one that prefers ``executor``, or an actor
    /// that adopted it) reaches its loop here without carrying the
    /// non-`Sendable` loop into the task. When a thread drives several loops,
    /// this is the one whose iteration is running, or ran last.
    public static var current: EventLoop? {
        guard let pointer = cevpl_current_loop() else { return nil }
        return Unmanaged<EventLoopExecutor>.fromOpaque(pointer).takeUnretainedValue().loopIfRunningHere
    }

    /// Makes this loop the calling thread's ``current`` loop. The thread
    /// keeps a reference to the loop's executor, which outlives the loop and
    /// knows whether it still exists, until it records another loop or
    /// exits.
    @inline(__always)
    func becomeCurrent() {
        let mine = Unmanaged.passUnretained(executor).toOpaque()
        let previous = cevpl_current_loop()
        guard previous != mine else { return }
        _ = Unmanaged.passUnretained(executor).retain()
        cevpl_set_current_loop(mine) { executor in
            if let executor { Unmanaged<EventLoopExecutor>.fromOpaque(executor).release() }
        }
        if let previous { Unmanaged<EventLoopExecutor>.fromOpaque(previous).release() }
    }
}
