/// A periodic timer, its deadlines kept in nanoseconds.
///
/// Each firing is rescheduled from its previous deadline, not from when the
/// callback ran, so a periodic timer does not drift. When the loop falls more
/// than a period behind, missed periods are skipped rather than fired in a
/// burst. A one-shot timer is a periodic one that cancels itself in its
/// callback (or use ``EventLoop/addOneShotTimer(after:_:)``). Cancelling from
/// inside any callback, including the timer's own, is safe.
public final class EvplTimer {
    /// Time between firings, in nanoseconds.
    public let intervalNanoseconds: UInt64
    /// Time between firings.
    public var interval: Duration { .nanoseconds(intervalNanoseconds) }
    /// The next time the timer fires, on ``MonotonicClock``.
    @exclusivity(unchecked) public internal(set) var deadline: UInt64
    var heapIndex: Int = -1
    let handler: (EvplTimer) -> Void
    unowned let loop: EventLoop

    init(loop: EventLoop, intervalNanoseconds: UInt64, deadline: UInt64, handler: @escaping (EvplTimer) -> Void) {
        self.loop = loop
        self.intervalNanoseconds = intervalNanoseconds
        self.deadline = deadline
        self.handler = handler
    }

    /// Whether the timer is still scheduled.
    public var isActive: Bool { heapIndex >= 0 }

    /// Stops the timer; it never fires again. Cancelling twice is harmless.
    public func cancel() {
        loop.timers.remove(self)
    }

    /// Schedules a cancelled timer again, first one interval from now,
    /// without allocating: for a timer kept for work that comes and goes.
    func restart() {
        guard !isActive else { return }
        deadline = MonotonicClock.nanoseconds() &+ intervalNanoseconds
        loop.timers.insert(self)
    }
}

extension EventLoop {
    /// Adds a timer that fires every `interval`, first after one interval.
    ///
    /// Deadlines are kept in nanoseconds, and a sleeping loop wakes for the
    /// earliest one with a nanosecond timeout (`epoll_pwait2` where the
    /// kernel has it, or `io_uring_enter`); a timer fires at the first pass
    /// of the loop after its deadline.
    ///
    /// - Throws: ``EvplError`` `.invalidArgument` for an interval under one
    ///   nanosecond or over 292 years.
    @discardableResult
    public func addTimer(every interval: Duration, _ handler: @escaping (EvplTimer) -> Void) throws(EvplError) -> EvplTimer {
        checkLoopThread()
        // A deadline is compared as a signed 64-bit distance from now.
        guard let nanoseconds = interval.wholeNanoseconds, nanoseconds > 0, nanoseconds <= UInt64(Int64.max) else {
            throw EvplError(.invalidArgument, operation: "add timer", context: "interval \(interval)")
        }
        let timer = EvplTimer(loop: self, intervalNanoseconds: nanoseconds, deadline: MonotonicClock.nanoseconds() &+ nanoseconds, handler: handler)
        timers.insert(timer)
        return timer
    }

    /// Adds a timer that fires once, `delay` from now (at the next pass of
    /// the loop for a delay of zero or less).
    ///
    /// - Throws: ``EvplError`` `.invalidArgument` for a delay over 292 years.
    @discardableResult
    public func addOneShotTimer(after delay: Duration, _ handler: @escaping (EvplTimer) -> Void) throws(EvplError) -> EvplTimer {
        try addTimer(every: max(delay, .nanoseconds(1))) { timer in
            timer.cancel()
            handler(timer)
        }
    }

    /// Fires every timer whose deadline has passed; returns whether any fired.
    func fireExpiredTimers() -> Bool {
        guard timers.nextDeadline != .max else { return false }
        var now = MonotonicClock.nanoseconds()
        timersCheckedAt = now
        guard timers.nextDeadline <= now else { return false }
        var fired = false
        while let timer = timers.first, timer.deadline <= now {
            var next = timer.deadline &+ timer.intervalNanoseconds
            if next <= now {
                let behind = now - timer.deadline
                next = timer.deadline &+ (behind / timer.intervalNanoseconds + 1) &* timer.intervalNanoseconds
            }
            timer.deadline = next
            timers.deadlineIncreased(timer)
            timer.handler(timer)
            fired = true
            now = MonotonicClock.nanoseconds()
            timersCheckedAt = now
        }
        return fired
    }
}

/// A binary min-heap of timers ordered by deadline; each timer knows its index
/// so removal is O(log n).
struct TimerHeap {
    private var heap: [EvplTimer] = []

    var first: EvplTimer? { heap.isEmpty ? nil : heap[0] }
    /// The earliest deadline, or `UInt64.max` without timers: kept as a
    /// plain value so that an iteration's check reads no timer object.
    private(set) var nextDeadline: UInt64 = .max
    var count: Int { heap.count }

    mutating func insert(_ timer: EvplTimer) {
        precondition(timer.heapIndex < 0)
        timer.heapIndex = heap.count
        heap.append(timer)
        siftUp(heap.count - 1)
        nextDeadline = heap[0].deadline
    }

    mutating func remove(_ timer: EvplTimer) {
        let index = timer.heapIndex
        guard index >= 0 else { return }
        timer.heapIndex = -1
        let last = heap.removeLast()
        if index < heap.count {
            heap[index] = last
            last.heapIndex = index
            siftDown(index)
            siftUp(last.heapIndex)
        }
        nextDeadline = heap.first?.deadline ?? .max
    }

    mutating func deadlineIncreased(_ timer: EvplTimer) {
        guard timer.heapIndex >= 0 else { return }
        siftDown(timer.heapIndex)
        nextDeadline = heap[0].deadline
    }

    private mutating func siftUp(_ start: Int) {
        var child = start
        while child > 0 {
            let parent = (child - 1) / 2
            guard heap[child].deadline < heap[parent].deadline else { break }
            swapAt(child, parent)
            child = parent
        }
    }

    private mutating func siftDown(_ start: Int) {
        var parent = start
        while true {
            let left = parent * 2 + 1
            guard left < heap.count else { break }
            var smallest = left
            if left + 1 < heap.count, heap[left + 1].deadline < heap[left].deadline { smallest = left + 1 }
            guard heap[smallest].deadline < heap[parent].deadline else { break }
            swapAt(parent, smallest)
            parent = smallest
        }
    }

    private mutating func swapAt(_ a: Int, _ b: Int) {
        heap.swapAt(a, b)
        heap[a].heapIndex = a
        heap[b].heapIndex = b
    }
}

extension Duration {
    /// The duration in whole nanoseconds (rounded down), or `nil` when it
    /// is negative or does not fit in a `UInt64`.
    var wholeNanoseconds: UInt64? {
        let (seconds, attoseconds) = components
        guard seconds >= 0, attoseconds >= 0 else { return nil }
        let (whole, overflow) = UInt64(seconds).multipliedReportingOverflow(by: 1_000_000_000)
        let (total, carry) = whole.addingReportingOverflow(UInt64(attoseconds / 1_000_000_000))
        return overflow || carry ? nil : total
    }
}
