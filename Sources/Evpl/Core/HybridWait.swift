/// The hybrid wait's decision, after each iteration, of how the next one
/// waits: poll at once, or sleep until the next timer (or until woken).
///
/// A pure value given the clock and what the iteration saw, so that it can
/// be tested with a made-up clock. A loop with work queued polls and a
/// pinned loop spins, whatever the policy. Otherwise the ``WaitPolicy``
/// decides: ``WaitPolicy/fixed`` keeps polling for ``spinNanoseconds``
/// after the last activity, ``WaitPolicy/sleep`` sleeps at once, and
/// ``WaitPolicy/adaptive`` spins for the window ``AdaptiveWait`` learns
/// (never more than ``spinNanoseconds``), and around the arrival it
/// expects when the load comes at a steady pace.
struct HybridWait {
    /// What the next iteration does.
    enum Decision: Equatable {
        /// Poll without blocking: work is queued, or the loop is pinned.
        case poll
        /// Poll without blocking because activity was recent; `yield`
        /// says to give the CPU away first (this pass found nothing to do).
        case spin(yield: Bool)
        /// Block until `deadline` (on the monotonic clock), or until woken
        /// when `nil`.
        case sleep(until: UInt64?)
    }

    let policy: WaitPolicy
    /// The longest the loop spins after activity.
    let spinNanoseconds: UInt64
    /// Whether an idle polling pass yields the CPU.
    let spinYields: Bool
    /// When the loop last saw activity.
    private(set) var lastActivity: UInt64 = 0
    /// Since the last activity the loop found nothing to do, or slept: the
    /// next activity ends an idle gap.
    private var wasIdle = false
    /// When the adaptive policy's current run of spinning began; 0 while it
    /// does not spin. A run that ends in a sleep found nothing: waste.
    private var spinningSince: UInt64 = 0
    /// When the adaptive policy last decided to spin.
    private var lastSpinPass: UInt64 = 0
    /// What the adaptive policy has learned.
    private(set) var adaptive: AdaptiveWait

    init(policy: WaitPolicy = .fixed, spinNanoseconds: UInt64, spinYields: Bool, idleSpinShare: Double = 0.05) {
        // A window of 0 means never spin, whatever the policy.
        self.policy = spinNanoseconds == 0 ? .sleep : policy
        self.spinNanoseconds = spinNanoseconds
        self.spinYields = spinYields
        adaptive = AdaptiveWait(maximumSpin: spinNanoseconds, idleSpinShare: idleSpinShare)
    }

    /// Decides the next wait at `now`: `active` says the iteration did
    /// something (`timersOnly`: nothing but fire timers, which the adaptive
    /// policy does not count as an arrival: the loop knows when they come),
    /// `hasWork` that work is queued for the next one, `pinned` that the
    /// loop is pinned, and `nextTimer` is the earliest timer's deadline
    /// (`UInt64.max` without one).
    @inline(__always)
    mutating func decide(now: UInt64, active: Bool, timersOnly: Bool = false, hasWork: Bool, pinned: Bool, nextTimer: UInt64) -> Decision {
        let active = active && !(timersOnly && policy == .adaptive)
        if active {
            // The first activity ends no gap: there was no activity before it.
            // Activity a spin caught arrived after the last pass that found
            // nothing, not when the iteration that served it ended.
            if wasIdle && lastActivity != 0 && policy == .adaptive {
                adaptive.recordGap(now &- lastActivity, arrivedAt: spinningSince != 0 ? lastSpinPass : now)
                if spinningSince != 0 { adaptive.recordCaughtSpin(spent: lastSpinPass &- spinningSince, at: now) }
            }
            lastActivity = now
            spinningSince = 0
        }
        wasIdle = !active
        if hasWork { return .poll }
        if pinned { return .spin(yield: !active && spinYields) }
        switch policy {
        case .fixed:
            if now &- lastActivity < spinNanoseconds { return .spin(yield: !active && spinYields) }
        case .sleep:
            break
        case .adaptive:
            return decideAdaptively(now: now, active: active, nextTimer: nextTimer)
        }
        return .sleep(until: nextTimer == .max ? nil : nextTimer)
    }

    private mutating func decideAdaptively(now: UInt64, active: Bool, nextTimer: UInt64) -> Decision {
        // A followed pace spins only around its arrivals; otherwise the
        // window after activity decides.
        let spins = adaptive.followsPace ? adaptive.expectsArrival(at: now) : now &- lastActivity < adaptive.spinWindow
        if spins {
            if spinningSince == 0 { spinningSince = now }
            lastSpinPass = now
            return .spin(yield: !active && spinYields)
        }
        // A sleep straight after activity still ends in a gap when the next comes.
        wasIdle = true
        if spinningSince != 0 {
            adaptive.recordWastedSpin(now &- spinningSince, at: now)
            spinningSince = 0
        }
        if let wake = adaptive.wakeBeforeArrival(after: now), wake < nextTimer { return .sleep(until: wake) }
        return .sleep(until: nextTimer == .max ? nil : nextTimer)
    }

    /// Whether a wake from sleep counts as activity (the fixed window spins
    /// after it). The adaptive policy counts only what the iteration did,
    /// so that a timer that wakes the loop for nothing is not an arrival.
    var wakeStartsBusyPeriod: Bool { policy != .adaptive }

    /// Tells the policy that a sleep meant to end at its deadline woke
    /// `late` nanoseconds after it: what a wake-up costs here.
    mutating func recordWake(late: UInt64) {
        if policy == .adaptive { adaptive.recordWake(late: late) }
    }
}
