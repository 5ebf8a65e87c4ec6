/// What ``WaitPolicy/adaptive`` learns from a loop's history, and the spin
/// it chooses from it. A pure value over the times it is given.
///
/// - **The gaps.** Each idle gap (from the end of the last active iteration
///   to the next activity) goes into a histogram of microseconds, four
///   buckets to each power of two, halved every ``decayEvery`` gaps so that
///   it follows the load.
/// - **The wake-up cost.** When a sleep with a deadline ends at its
///   deadline, how late it woke is a sample of the timer's lateness here; a
///   moving average of those samples, ``initialTimerLateness`` until the
///   first. An event that finds the loop asleep pays at least
///   ``minimumWakeCost`` more (another CPU's interrupt and the scheduler's
///   wake-up, tens of microseconds on a virtual machine), or the timer's
///   lateness when that is more.
/// - **The spin window.** When the 90th percentile gap is within
///   ``spinFactor`` wake-ups, the loop spins across twice that gap (at most
///   ``maximumSpin``): a loop in a
///   conversation, whose every gap a wake-up would lengthen by a large
///   part, never sleeps between messages. Two loops that talk to each
///   other and both sleep see gaps of two wake-ups, which is inside the
///   rule, so they start spinning and their gaps shrink to the work
///   itself. Longer gaps make the loop sleep as soon as an iteration finds
///   nothing. With no history the window is one wake-up (the ski-rental
///   choice, never worse than twice the best). Spins that end in a sleep
///   without finding anything count as waste; while the waste over the last
///   ``budgetPeriod`` exceeds the idle spin share, the window halves.
/// - **The pace.** When the last ``paceSamples`` arrivals (an activity that
///   ended an idle gap) came at a steady interval, the next is expected one
///   interval after the last: the loop sleeps until shortly before it, and
///   spins across it.
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
    /// Arrivals whose intervals decide whether the pace is steady.
    static let paceSamples = 8
    /// Histogram buckets: gaps under 1 us, 1, 2 and 3 us, then four to each
    /// power of two up to 2^21 us (a second or two; longer gaps share the last).
    static let buckets = 80

    /// The most the window may be (``EvplConfig/spinNanoseconds``).
    let maximumSpin: UInt64
    /// The share of time spins that find nothing may take.
    let idleSpinShare: Double

    private var gaps = [Double](repeating: 0, count: AdaptiveWait.buckets)
    private var gapsSinceDecay = 0
    /// The moving average of how late timer wakes were, in nanoseconds.
    private(set) var timerLateness = AdaptiveWait.initialTimerLateness
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
    private var periodStart: UInt64 = 0
    /// Intervals between recent arrivals (a ring) and the last arrival.
    private var intervals = [UInt64](repeating: 0, count: AdaptiveWait.paceSamples)
    private var intervalCount = 0
    private var lastArrival: UInt64 = 0
    /// When the next arrival is due, while the pace is steady; 0 otherwise.
    private(set) var expectedArrival: UInt64 = 0
    /// How far around ``expectedArrival`` the loop spins for it.
    private(set) var arrivalMargin: UInt64 = 0

    init(maximumSpin: UInt64, idleSpinShare: Double) {
        self.maximumSpin = maximumSpin
        self.idleSpinShare = idleSpinShare
        chosenWindow = min(maximumSpin, Self.minimumWakeCost)
    }

    /// Records an idle gap of `gap` nanoseconds that activity ended at `now`.
    mutating func recordGap(_ gap: UInt64, endingAt now: UInt64) {
        gaps[Self.bucket(of: gap)] += 1
        gapsSinceDecay += 1
        if gapsSinceDecay == Self.decayEvery {
            gapsSinceDecay = 0
            for index in gaps.indices { gaps[index] *= 0.5 }
        }
        recordArrival(at: now)
        // A throttled window may waste nothing more to be judged by: a
        // period gone by lifts the throttle as a quiet one does.
        if throttle > 0 && now &- periodStart > Self.budgetPeriod { recordWastedSpin(0, at: now) }
        // The choice is worth redoing every few gaps, not on each.
        if gapsSinceDecay % 4 == 0 { chooseWindow() }
    }

    /// Records that a sleep meant to end at its deadline woke `late`
    /// nanoseconds after it.
    mutating func recordWake(late: UInt64) {
        let sample = min(late, 1_000_000)
        timerLateness = (timerLateness * 7 + sample) / 8
    }

    /// Records `spent` nanoseconds of spinning that found nothing before
    /// the loop slept at `now`, and halves the window while such spins take
    /// more than the budget.
    mutating func recordWastedSpin(_ spent: UInt64, at now: UInt64) {
        let budget = idleSpinShare * Double(Self.budgetPeriod)
        if now &- periodStart > Self.budgetPeriod {
            // A period well under budget lifts one halving.
            if Double(wastedSpin) < budget / 2 && throttle > 0 { throttle -= 1 }
            periodStart = now
            wastedSpin = 0
        }
        wastedSpin &+= spent
        if Double(wastedSpin) > budget && throttle < 32 {
            throttle += 1
            wastedSpin = 0
        }
    }

    /// Whether a loop idle since before `now` should be spinning for an
    /// arrival due about now.
    func expectsArrival(at now: UInt64) -> Bool {
        expectedArrival != 0 && now &+ arrivalMargin >= expectedArrival && now < expectedArrival &+ arrivalMargin
    }

    /// When a sleeping loop should wake to spin for the next expected
    /// arrival, or `nil` when none is expected after `now`.
    func wakeBeforeArrival(after now: UInt64) -> UInt64? {
        guard expectedArrival != 0, expectedArrival > now &+ arrivalMargin else { return nil }
        return expectedArrival - arrivalMargin
    }

    private mutating func recordArrival(at now: UInt64) {
        if lastArrival != 0 {
            intervals[intervalCount % Self.paceSamples] = now &- lastArrival
            intervalCount += 1
        }
        lastArrival = now
        expectedArrival = 0
        guard intervalCount >= Self.paceSamples else { return }
        var smallest = UInt64.max
        var largest: UInt64 = 0
        var sum: UInt64 = 0
        for index in 0..<Self.paceSamples {
            smallest = min(smallest, intervals[index])
            largest = max(largest, intervals[index])
            sum &+= intervals[index]
        }
        let mean = sum / UInt64(Self.paceSamples)
        // Steady: every interval within a fifth of the mean (or within two
        // wake-ups of each other: an arrival that finds the loop asleep is
        // seen a wake-up late), and long enough that sleeping through most
        // of it saves something.
        let spread = largest - smallest
        guard spread <= max(mean / 5, 2 * wakeCost), mean > 4 * wakeCost else { return }
        arrivalMargin = min(timerLateness + timerLateness / 2 + spread / 2, mean / 4)
        expectedArrival = now &+ mean
    }

    /// Twice the 90th percentile gap while it is within ``spinFactor``
    /// wake-ups, and 0 beyond.
    private mutating func chooseWindow() {
        let total = gaps.reduce(0, +)
        guard total > 0 else { return }
        let target = 0.9 * total
        var seen = 0.0
        var index = 0
        while index < Self.buckets - 1 && seen + gaps[index] < target {
            seen += gaps[index]
            index += 1
        }
        // The percentile, placed within its bucket as if its gaps were spread evenly.
        let (low, high) = Self.bounds(of: index)
        let within = gaps[index] > 0 ? (target - seen) / gaps[index] : 1
        let percentile = UInt64(Double(low) + within * Double(high - low))
        chosenWindow = percentile <= Self.spinFactor * wakeCost ? min(maximumSpin, 2 * percentile) : 0
    }

    static func bucket(of gap: UInt64) -> Int {
        let microseconds = gap / 1_000
        guard microseconds >= 4 else { return Int(microseconds) }
        let octave = 63 - microseconds.leadingZeroBitCount
        let quarter = Int((microseconds >> (octave - 2)) & 3)
        return min(buckets - 1, 4 + (octave - 2) * 4 + quarter)
    }

    /// The gaps bucket `index` holds, in nanoseconds: [low, high).
    static func bounds(of index: Int) -> (UInt64, UInt64) {
        guard index >= 4 else { return (UInt64(index) * 1_000, UInt64(index + 1) * 1_000) }
        let octave = (index - 4) / 4 + 2
        let quarter = UInt64((index - 4) % 4)
        return ((4 + quarter) << (octave - 2) * 1_000, (5 + quarter) << (octave - 2) * 1_000)
    }
}
