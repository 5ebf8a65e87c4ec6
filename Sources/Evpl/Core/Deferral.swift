/// Work that runs once at the end of the loop iteration in which it was
/// armed, after all events of that iteration, such as flushing a batch of
/// sends built up by several callbacks.
///
/// Arming an armed deferral does nothing, so a burst of events gives one run.
/// Deferrals run in the order they were armed. An armed deferral keeps the
/// loop from sleeping.
public final class Deferral {
    let handler: (Deferral) -> Void
    unowned let loop: EventLoop
    /// Whether the deferral will run at the end of this iteration.
    @exclusivity(unchecked) public internal(set) var isArmed = false
    /// Whether the deferral sits in the loop's armed list (disarming leaves it there).
    @exclusivity(unchecked) var isQueued = false
    /// Whether an armed run still happens when the loop goes away: for a
    /// deferral that lets go of what work in flight kept alive (a block
    /// device's reference on itself), which nothing else would release.
    var runsWhenLoopEnds = false

    init(loop: EventLoop, handler: @escaping (Deferral) -> Void) {
        self.loop = loop
        self.handler = handler
    }

    /// Schedules one run at the end of the current iteration.
    public func arm() {
        guard !isArmed else { return }
        isArmed = true
        guard !isQueued else { return }
        isQueued = true
        loop.armedDeferrals.append(self)
    }

    /// Cancels a pending run. Disarming an idle deferral is harmless.
    public func disarm() {
        isArmed = false
    }
}

extension EventLoop {
    /// Creates an idle deferral whose `handler` runs each time it is armed.
    public func makeDeferral(_ handler: @escaping (Deferral) -> Void) -> Deferral {
        checkLoopThread()
        return Deferral(loop: self, handler: handler)
    }

    func runDeferrals() -> Bool {
        guard armedDeferrals.beginBatch() else { return false }
        var ran = false
        for index in armedDeferrals.batch.indices {
            let deferral = armedDeferrals.batch[index]
            deferral.isQueued = false
            guard deferral.isArmed else { continue }
            deferral.isArmed = false
            deferral.handler(deferral)
            ran = true
        }
        armedDeferrals.endBatch()
        return ran
    }
}
