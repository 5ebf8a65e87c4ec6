/// The handshake and idle deadlines of one loop's connections, kept in a
/// timer wheel driven by a single loop timer.
///
/// A connection sits in the slot of a tick at or before its deadline.
/// Activity only moves the deadline later (``Connection/lastActivity`` is
/// one store), so nothing moves in the wheel on the hot path: when a slot
/// comes up, each connection in it either timed out or goes to the slot of
/// its current deadline. Deadlines further out than a revolution come
/// round again. The timer runs only while some connection has a deadline
/// (and one tick after the last goes), so an idle loop without them still
/// sleeps without waking.
final class ConnectionDeadlines {
    /// Wheel resolution: a timeout fires up to this late.
    static let tick: UInt64 = 100_000_000
    /// Slots in the wheel: one revolution is 51.2 s.
    static let slotCount = 512

    private unowned let loop: EventLoop
    private var slots: [[Connection]]
    /// The next tick to look at.
    private var cursor: UInt64 = 0
    private var timer: EvplTimer?
    private var count = 0
    /// The most deadlines at once since the wheel was last empty.
    private var peakCount = 0
    private var expired: [Connection] = []

    init(loop: EventLoop) {
        self.loop = loop
        slots = Array(repeating: [], count: Self.slotCount)
    }

    /// Places `connection` by its current deadline, or takes it out of the
    /// wheel when it has none.
    func update(_ connection: Connection) {
        remove(connection)
        guard let deadline = connection.nextDeadline else { return }
        insert(connection, at: deadline)
    }

    /// Takes `connection` out of the wheel (it closed, or lost its limits).
    func remove(_ connection: Connection) {
        let slot = connection.deadlineSlot
        guard slot >= 0 else { return }
        let index = connection.deadlineIndex
        let last = slots[slot].removeLast()
        if last !== connection {
            slots[slot][index] = last
            last.deadlineIndex = index
        }
        connection.deadlineSlot = -1
        count -= 1
        // The timer stops at its next tick if the wheel is still empty then
        // (``advance()``), not here: a deadline set and cleared per message
        // would otherwise make and cancel a timer each time.
    }

    /// Stops the timer once no connection has a deadline. After a wave of
    /// them, the slots give back the capacity they grew to.
    private func stopTimer() {
        timer?.cancel()
        timer = nil
        if peakCount >= Self.waveSize {
            slots = Array(repeating: [], count: Self.slotCount)
            expired = []
        }
        peakCount = 0
    }

    /// Deadlines at once past which an emptied wheel frees its slots' capacity.
    private static let waveSize = 1024

    private func insert(_ connection: Connection, at deadline: UInt64) {
        if timer == nil {
            cursor = MonotonicClock.nanoseconds() / Self.tick
            timer = try? loop.addTimer(every: .nanoseconds(Self.tick)) { [unowned self] _ in advance() }
        }
        let tick = max(deadline / Self.tick, cursor)
        let slot = Int(tick % UInt64(Self.slotCount))
        connection.deadlineTick = tick
        connection.deadlineSlot = slot
        connection.deadlineIndex = slots[slot].count
        slots[slot].append(connection)
        count += 1
        peakCount = max(peakCount, count)
    }

    /// The slot of `deadline`'s tick, never behind the cursor: a slot
    /// already passed would wait a revolution.
    private func slot(for deadline: UInt64) -> Int {
        Int(max(deadline / Self.tick, cursor) % UInt64(Self.slotCount))
    }

    /// Visits the slots of every tick up to now: connections past their
    /// deadline time out, the others move to the slot of their deadline.
    private func advance() {
        let now = MonotonicClock.nanoseconds()
        let through = now / Self.tick
        defer { if count == 0 { stopTimer() } }
        while cursor <= through && count > 0 {
            let current = Int(cursor % UInt64(Self.slotCount))
            cursor += 1
            guard !slots[current].isEmpty else { continue }
            var index = 0
            while index < slots[current].count {
                let connection = slots[current][index]
                if let deadline = connection.nextDeadline, deadline > now {
                    if slot(for: deadline) == current {
                        // Due a revolution from now: it stays, and the wheel looks at it next then.
                        connection.deadlineTick = cursor - 1 + UInt64(Self.slotCount)
                        index += 1
                        continue
                    }
                    // The slot's last connection takes this index: it is looked at next.
                    remove(connection)
                    insert(connection, at: deadline)
                    continue
                }
                remove(connection)
                expired.append(connection)
            }
        }
        if cursor <= through { cursor = through + 1 }
        guard !expired.isEmpty else { return }
        let due = expired
        expired.removeAll(keepingCapacity: true)
        for connection in due { connection.deadlinePassed(now: now) }
    }
}
