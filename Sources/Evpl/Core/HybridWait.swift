/// The hybrid wait's decision, after each iteration, of how the next one
/// waits: poll at once, or sleep until the next timer (or until woken).
///
/// A pure value given the clock and what the iteration saw, so that it can
/// be tested with a made-up clock: a loop that saw activity less than
/// ``spinNanoseconds`` ago keeps polling (a peer's next message is likely
/// to come sooner than a wake-up from sleep would take), a pinned loop or
/// one with work queued always polls, and an idle loop sleeps.
struct HybridWait {
    /// What the next iteration does.
    enum Decision: Equatable {
        /// Poll without blocking: work is queued, or the loop is pinned.
        case poll
        /// Poll without blocking because activity was recent; `yield`
        /// says to give the CPU away first (this pass found nothing to do).
        case spin(yield: Bool)
        /// Block until `deadline` (the next timer, on the monotonic clock),
        /// or until woken when `nil`.
        case sleep(until: UInt64?)
    }

    /// How long after the last activity the loop keeps polling.
    let spinNanoseconds: UInt64
    /// Whether an idle polling pass yields the CPU.
    let spinYields: Bool
    /// When the loop last saw activity.
    private(set) var lastActivity: UInt64 = 0

    init(spinNanoseconds: UInt64, spinYields: Bool) {
        self.spinNanoseconds = spinNanoseconds
        self.spinYields = spinYields
    }

    /// Decides the next wait at `now`: `active` says the iteration did
    /// something, `hasWork` that work is queued for the next one, `pinned`
    /// that the loop is pinned, and `nextTimer` is the earliest timer's
    /// deadline (`UInt64.max` without one).
    @inline(__always)
    mutating func decide(now: UInt64, active: Bool, hasWork: Bool, pinned: Bool, nextTimer: UInt64) -> Decision {
        if active { lastActivity = now }
        if hasWork { return .poll }
        if pinned || now &- lastActivity < spinNanoseconds {
            return .spin(yield: !active && spinYields)
        }
        return .sleep(until: nextTimer == .max ? nil : nextTimer)
    }
}
