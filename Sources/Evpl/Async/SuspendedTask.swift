/// One task at a time suspended on a loop until a loop callback resumes it,
/// its task is cancelled, or the deadline of an enclosing
/// ``EventLoop/withTimeout(_:_:)`` passes.
///
/// Owners keep one for as long as they live (a connection's inbound side,
/// its writer), so waiting allocates nothing: the continuation lives in
/// the task, and a timer is made only when a deadline applies.
package final class SuspendedTask: @unchecked Sendable {
    // Sendable because every member is touched only on the loop's thread:
    // `wait` and `resume` are called there, and the cancellation handler,
    // which may run on any thread, moves to the loop before touching
    // anything.
    private unowned(unsafe) let loop: EventLoop
    private let executor: EventLoopExecutor
    private var continuation: UnsafeContinuation<EvplError?, Never>?
    /// Counts waits, so that a cancellation that arrives on the loop after
    /// its wait ended cannot end the next one.
    private var generation: UInt64 = 0
    private var timer: EvplTimer?

    package init(loop: EventLoop) {
        self.loop = loop
        self.executor = loop.executor
    }

    /// Whether a task is suspended here now.
    package var isWaiting: Bool { continuation != nil }

    /// Suspends the calling task, which runs on the loop, until ``resume()``.
    ///
    /// - Parameters:
    ///   - operation: names the wait in the errors it throws.
    ///   - wakeAt: a ``MonotonicClock`` time at which the wait ends by
    ///     itself, without an error (a sleep).
    /// - Throws: ``EvplError`` `.cancelled` when the task is or becomes
    ///   cancelled, `.timedOut` when the enclosing deadline passes first.
    nonisolated(nonsending) package func wait(_ operation: String, wakeAt: UInt64? = nil) async throws(EvplError) {
        precondition(continuation == nil, "two tasks wait on one \(operation)")
        generation &+= 1
        let waitGeneration = generation
        let deadline = TaskDeadline.nanoseconds
        let interruption = await withTaskCancellationHandler {
            await withUnsafeContinuation { (continuation: UnsafeContinuation<EvplError?, Never>) in
                if Task.isCancelled {
                    continuation.resume(returning: EvplError(.cancelled, operation: operation))
                    return
                }
                let wakeTime = min(wakeAt ?? .max, deadline ?? .max)
                if wakeTime != .max {
                    let now = MonotonicClock.nanoseconds()
                    if wakeTime <= now {
                        continuation.resume(returning: Self.expiry(operation, wakeAt: wakeAt, now: now))
                        return
                    }
                    timer = try? loop.addOneShotTimer(after: .nanoseconds(Int64(wakeTime - now))) { [unowned self] _ in
                        timer = nil
                        interrupt(Self.expiry(operation, wakeAt: wakeAt, now: MonotonicClock.nanoseconds()), generation: waitGeneration)
                    }
                }
                self.continuation = continuation
            }
        } onCancel: {
            let cancelled = EvplError(.cancelled, operation: operation)
            if executor.isLoopThread {
                interrupt(cancelled, generation: waitGeneration)
            } else {
                executor.remote.execute { _ in self.interrupt(cancelled, generation: waitGeneration) }
            }
        }
        timer?.cancel()
        timer = nil
        if let interruption { throw interruption }
    }

    /// Resumes the waiting task normally; does nothing when none waits.
    @inline(__always)
    package func resume() {
        guard let continuation else { return }
        self.continuation = nil
        continuation.resume(returning: nil)
    }

    /// Ends the wait of `generation` with `error` (or normally for `nil`),
    /// if it is still waiting.
    private func interrupt(_ error: EvplError?, generation target: UInt64) {
        guard target == generation, let continuation else { return }
        self.continuation = nil
        continuation.resume(returning: error)
    }

    /// What a timer ending a wait means: a sleep that is over, or a deadline.
    private static func expiry(_ operation: String, wakeAt: UInt64?, now: UInt64) -> EvplError? {
        if let wakeAt, wakeAt <= now { return nil }
        return EvplError(.timedOut, operation: operation)
    }
}

/// The deadline, on ``MonotonicClock``, that ``EventLoop/withTimeout(_:_:)``
/// sets for the library's awaits in the current task.
enum TaskDeadline {
    @TaskLocal static var nanoseconds: UInt64?
}
