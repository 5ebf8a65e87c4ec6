/// What ``WaitPolicy/adaptive`` learns from a loop's history, and the spin
/// it chooses from it. A pure value over the times it is given.
///
/// - **The gaps.** Each idle gap (from the end of the last active iteration
///   to the next activity) goes into a ``DurationHistogram``.
/// - **The wake-up cost.** When a sleep with a deadline ends at its
///   deadline, how late it woke is a sample of the timer's lateness here: a
///   moving average of the samples (``initialTimerLateness`` until the
///   first), and their ``wakeAheadShare`` percentile. An event that finds
///   the loop asleep is taken to pay at least ``minimumWakeCost`` more
///   (another CPU's interrupt and the scheduler's wake-up, tens of
///   microseconds on a virtual machine), or the timer's average lateness
///   when that is more.
/// - **The spin window.** When the 90th percentile gap is within
///   ``spinFactor`` wake-ups, the loop spins across twice that gap, and at
///   least one wake-up (a gap the window misses costs one; at most
///   ``maximumSpin``): a loop in a conversation, whose every gap a wake-up
///   would lengthen by a large part, never sleeps between messages. Two
///   loops that talk to each other and both sleep see gaps of two
///   wake-ups, which is inside the rule, so they start spinning and their
///   gaps shrink to the work itself. Longer gaps make the loop sleep as
///   soon as an iteration finds nothing. With no history the window is one
///   wake-up (the ski-rental choice, never worse than twice the best).
///   Spins that end in a sleep without finding anything count as waste;
///   while the waste over the last ``budgetPeriod`` exceeds the idle spin
///   share, the window halves.
/// - **The pace.** When arrivals come at a steady pace (``ArrivalPace``)
///   of at most ``paceFactor`` wake-ups, the loop sleeps on a timer until
///   shortly before the next is due (late timer wakes, at the
///   ``wakeAheadShare`` percentile, plus the pace's jitter, and never more
///   than ``paceSpinShare`` of the interval) and spins across it. A lighter
///   load leaves the loop asleep between arrivals: a wake-up then takes
///   little of its time, and the spin before each arrival would cost more
///   CPU than sleeping does.
struct AdaptiveWait {
    /// The first guess of a wake-up's cost, in nanoseconds, and the least
    /// an event that finds the loop asleep is taken to pay.
    static let minimumWakeCost: UInt64 = 30_000
    /// The first guess of how late a timer wakes a sleeping loop.
    static let initialTimerLateness: UInt64 = 10_000
    /// Gaps up to this many wake-ups are spun across.
    static let spinFactor: UInt64 = 3
    /// Gaps recorded between two halvings of the histogram.
    static let decayEvery = 32
    /// The period over which spin waste is held to the budget.
    static let budgetPeriod: UInt64 = 100_000_000
    /// The share of timer wakes that come early enough to spin for an
    /// expected arrival.
    static let wakeAheadShare = 0.995
    /// The most of each interval of a pace the loop spins for its arrival.
    static let paceSpinShare = 0.4
    /// Paces up to this many wake-ups apart are spun for.
    static let paceFactor: UInt64 = 8
    /// The least the loop spins past an expected arrival before it sleeps.
    static let minimumGrace: UInt64 = 10_000

    /// The most the window may be (``EvplConfig/spinNanoseconds``).
    let maximumSpin: UInt64
    /// The share of time spins that find nothing may take.
    let idleSpinShare: Double

    private var gaps = DurationHistogram(decayEvery: AdaptiveWait.decayEvery)
    /// How late recent timer wakes were.
    private var lateness = DurationHistogram(decayEvery: 256)
    /// The moving average of how late timer wakes were, in nanoseconds.
    private(set) var timerLateness = AdaptiveWait.initialTimerLateness
    /// How late a timer wakes at the ``wakeAheadShare`` percentile: a loop
    /// that sleeps until an expected arrival wakes this much before it.
    private(set) var lateTimerWake = AdaptiveWait.initialTimerLateness
    /// What an event that finds the loop asleep is taken to pay.
    var wakeCost: UInt64 { max(Self.minimumWakeCost, timerLateness) }
    /// The window the gaps call for, before the budget's throttle.
    private var chosenWindow: UInt64
    /// Halvings of the window the idle spin budget imposes now.
    private(set) var throttle = 0
    /// How long the loop spins after activity before it sleeps.
    var spinWindow: UInt64 { chosenWindow >> throttle }
    /// Spin time that ended in a sleep, in the current budget period.
    private var wastedSpin: UInt64 = 0
    /// What spins that caught work saved in the current budget period: a
    /// wake-up each, less the time they spun.
    private var spinCredit: Int64 = 0
    private var periodStart: UInt64 = 0
    /// The pace of recent arrivals.
    private(set) var pace = ArrivalPace()
    /// When the next arrival is due, while a pace is followed; 0 otherwise.
    private(set) var expectedArrival: UInt64 = 0
    /// How long before ``expectedArrival`` the loop starts to spin for it.
    private(set) var arrivalMargin: UInt64 = 0
    /// How long past ``expectedArrival`` the loop spins before it sleeps.
    private(set) var arrivalGrace: UInt64 = 0

    init(maximumSpin: UInt64, idleSpinShare: Double) {
        self.maximumSpin = maximumSpin
        self.idleSpinShare = idleSpinShare
        chosenWindow = min(maximumSpin, Self.minimumWakeCost)
    }

    /// Records an idle gap of `gap` nanoseconds, ended by activity that
    /// arrived at `arrival` (as far as the loop can tell).
    mutating func recordGap(_ gap: UInt64, arrivedAt arrival: UInt64) {
        gaps.record(gap)
        // Gaps shorter than a wake-up are a conversation (or the rest of
        // a burst, such as the completion of its reply), not arrivals to pace.
        if gap >= wakeCost { recordArrival(at: arrival) }
        // A throttled window may waste nothing more to be judged by: a
        // period gone by lifts the throttle as a quiet one does.
        if throttle > 0 { startPeriodIfDue(at: arrival) }
        // The choice is worth redoing every few gaps, not on each.
        if gaps.sinceDecay % 4 == 0 { chooseWindow() }
    }

    /// Records that a sleep meant to end at its deadline woke `late`
    /// nanoseconds after it.
    mutating func recordWake(late: UInt64) {
        // A stall of the machine says little of the next wake: each sample
        // moves the average by at most its own size again.
        let sample = min(late, 2 * timerLateness + 10_000)
        timerLateness = (timerLateness * 7 + sample) / 8
        lateness.record(late)
        lateTimerWake = lateness.percentile(Self.wakeAheadShare) ?? late
    }

    /// Records a spin that caught work after `spent` nanoseconds: it saved
    /// a wake-up, which buys spinning that finds nothing beyond the idle budget.
    mutating func recordCaughtSpin(spent: UInt64, at now: UInt64) {
        startPeriodIfDue(at: now)
        spinCredit += Int64(wakeCost) - Int64(spent)
    }

    /// Records `spent` nanoseconds of spinning that found nothing before
    /// the loop slept at `now`, and halves the window while such spins take
    /// more than the idle budget and what the caught ones saved.
    mutating func recordWastedSpin(_ spent: UInt64, at now: UInt64) {
        startPeriodIfDue(at: now)
        wastedSpin &+= spent
        if Double(wastedSpin) > allowance && throttle < 32 {
            throttle += 1
            wastedSpin = 0
            spinCredit = 0
        }
    }

    /// What spins that find nothing may take in a period: the idle share of
    /// it, and what the caught ones saved.
    private var allowance: Double {
        idleSpinShare * Double(Self.budgetPeriod) + Double(max(0, spinCredit))
    }

    private mutating func startPeriodIfDue(at now: UInt64) {
        guard now &- periodStart > Self.budgetPeriod else { return }
        // A period well within its allowance lifts one halving.
        if Double(wastedSpin) < allowance / 2 && throttle > 0 { throttle -= 1 }
        periodStart = now
        wastedSpin = 0
        spinCredit = 0
    }

    /// Whether a loop idle since before `now` should be spinning for an
    /// arrival due about now.
    func expectsArrival(at now: UInt64) -> Bool {
        expectedArrival != 0 && now &+ arrivalMargin >= expectedArrival && now < expectedArrival &+ arrivalGrace
    }

    /// When a sleeping loop should wake to spin for the next expected
    /// arrival, or `nil` when none is expected after `now`.
    func wakeBeforeArrival(after now: UInt64) -> UInt64? {
        guard expectedArrival != 0, expectedArrival > now &+ arrivalMargin else { return nil }
        return expectedArrival - arrivalMargin
    }

    /// Whether the loop follows a pace and spins only around its arrivals.
    var followsPace: Bool { expectedArrival != 0 }

    private mutating func recordArrival(at now: UInt64) {
        pace.record(at: now, wakeCost: wakeCost)
        expectedArrival = 0
        guard pace.expected > now else { return }
        // Followed when the load is heavy enough that wake-ups would take a
        // good part of the loop's time, and there is time to sleep between
        // arrivals: a sleep shorter than two wake-ups saves nothing, and
        // sleeping through a fast exchange of replies (a conversation at a
        // steady pace) would slow every turn by a wake-up.
        guard pace.interval <= Self.paceFactor * wakeCost else { return }
        let margin = min(lateTimerWake + pace.jitter + 2_000, UInt64(Double(pace.interval) * Self.paceSpinShare))
        guard pace.interval >= margin + 2 * wakeCost else { return }
        arrivalMargin = margin
        arrivalGrace = max(Self.minimumGrace, 2 * pace.jitter)
        expectedArrival = pace.expected
    }

    /// Twice the 90th percentile gap, and at least a wake-up (a miss costs
    /// one), while it is within ``spinFactor`` wake-ups; 0 beyond.
    private mutating func chooseWindow() {
        guard let percentile = gaps.percentile(0.9) else { return }
        chosenWindow = percentile <= Self.spinFactor * wakeCost ? min(maximumSpin, max(2 * percentile, wakeCost)) : 0
    }
}
