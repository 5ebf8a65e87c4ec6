extension EventLoop {
    /// Suspends the calling task, which must run on this loop, for
    /// `duration`, on the loop's own timer heap: no system timer, and the
    /// loop may sleep meanwhile.
    ///
    /// - Throws: ``EvplError`` `.cancelled` when the task is cancelled,
    ///   `.timedOut` when an enclosing ``withTimeout(_:_:)`` ends first,
    ///   `.invalidArgument` for a duration over 292 years. A duration of
    ///   zero or less returns at once (after the cancellation check).
    nonisolated(nonsending) public func sleep(for duration: Duration) async throws(EvplError) {
        checkLoopThread()
        guard duration > .zero else {
            if Task.isCancelled { throw EvplError(.cancelled, operation: "sleep") }
            return
        }
        guard let nanoseconds = duration.wholeNanoseconds, nanoseconds <= UInt64(Int64.max) else {
            throw EvplError(.invalidArgument, operation: "sleep", context: "duration \(duration)")
        }
        try await SuspendedTask(loop: self).wait("sleep", wakeAt: MonotonicClock.nanoseconds() &+ nanoseconds)
    }

    /// Runs `operation` with a deadline `duration` from now: every await of
    /// this library inside it (a receive, a write, an accept, a sleep) that
    /// is still suspended when the deadline passes throws ``EvplError``
    /// `.timedOut`, and one that starts later throws it at once. Nested
    /// timeouts keep the earlier deadline.
    ///
    /// The deadline is carried as a task-local value, so the operation
    /// runs in the calling task (it may touch the loop's non-`Sendable`
    /// objects) and costs nothing until an await arms a loop timer for it.
    /// Awaits outside the library (another actor, `Task.sleep`) do not
    /// observe it.
    nonisolated(nonsending) public static func withTimeout<Result>(
        _ duration: Duration, _ operation: nonisolated(nonsending) () async throws -> Result
    ) async rethrows -> Result {
        let now = MonotonicClock.nanoseconds()
        let requested = duration <= .zero ? now : now &+ min(duration.wholeNanoseconds ?? UInt64(Int64.max), UInt64(Int64.max))
        let deadline = min(requested, TaskDeadline.nanoseconds ?? .max)
        return try await TaskDeadline.$nanoseconds.withValue(deadline, operation: operation)
    }
}
