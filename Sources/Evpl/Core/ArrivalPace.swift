/// Whether a loop's arrivals come at a steady pace, and when the next one
/// is due. Part of ``AdaptiveWait``; a pure value over the times it is given.
///
/// An arrival is seen when the loop gets to it: at once while the loop
/// spins, a wake-up late while it sleeps. So the arrivals seen on time are
/// the earliest against the pace, and the estimate leans on them:
///
/// - **The interval** is the median of the last ``samples`` intervals. It
///   is steady when two in three lie within a tolerance of it (a fifth of
///   it, or two wake-ups: an arrival seen late lengthens one interval and
///   shortens the next). A stall of the machine, or a burst a stalled
///   client sends to catch up with its schedule, spoils only a few.
/// - **The phase** comes from the arrivals that lie on the lower envelope
///   of the recent ones, each placed on the nearest step of the pace: the
///   earliest and the latest of them refine the interval and anchor the
///   next due time. An arrival seen late does not move the phase.
/// - **The jitter** is how far the on-time arrivals stray from that line:
///   the peer's own irregularity, which the loop spins across.
struct ArrivalPace {
    /// Arrivals the estimate is made from.
    static let samples = 16

    private var arrivals = [UInt64](repeating: 0, count: ArrivalPace.samples)
    private var count = 0
    // Scratch space for the estimate, kept so that it allocates nothing.
    private var intervals = [UInt64](repeating: 0, count: ArrivalPace.samples - 1)
    private var steps = [Int64](repeating: 0, count: ArrivalPace.samples)
    private var offsets = [Int64](repeating: 0, count: ArrivalPace.samples)
    /// When the next arrival is due, while the pace is steady; 0 otherwise.
    private(set) var expected: UInt64 = 0
    /// The steady interval; 0 while there is none.
    private(set) var interval: UInt64 = 0
    /// How far on-time arrivals stray from the pace, in nanoseconds.
    private(set) var jitter: UInt64 = 0

    /// Records an arrival seen at `now`; `wakeCost` is what a wake-up is
    /// taken to cost (how late an arrival that finds the loop asleep is
    /// seen).
    mutating func record(at now: UInt64, wakeCost: UInt64) {
        arrivals[count % Self.samples] = now
        count += 1
        expected = 0
        interval = 0
        guard count >= Self.samples else { return }
        estimate(last: now, wakeCost: wakeCost)
    }

    private mutating func estimate(last: UInt64, wakeCost: UInt64) {
        let newest = count - 1
        for step in 1..<Self.samples {
            intervals[step - 1] = arrivals[(newest - step + 1) % Self.samples] &- arrivals[(newest - step) % Self.samples]
        }
        intervals.sort()
        let median = intervals[intervals.count / 2]
        guard median > 0 else { return }
        let tolerance = max(median / 5, 2 * wakeCost)
        var steady = 0
        for value in intervals where value &+ tolerance >= median && value <= median &+ tolerance { steady += 1 }
        guard steady * 3 >= intervals.count * 2 else { return }

        // Each arrival against the pace through the last one: its step
        // back from it and how far after that step it was seen.
        var earliest = Int64.max
        for back in 0..<Self.samples {
            let time = arrivals[(newest - back) % Self.samples]
            let since = Double(last &- time)
            steps[back] = -Int64((since / Double(median)).rounded())
            offsets[back] = Int64(bitPattern: time &- last) - steps[back] * Int64(median)
            earliest = min(earliest, offsets[back])
        }
        // The on-time arrivals: within half a wake-up of the earliest.
        let onTime = Int64(wakeCost / 2)
        var first = (step: Int64.max, offset: Int64(0))
        var final = (step: Int64.min, offset: Int64(0))
        for index in 0..<Self.samples where offsets[index] - earliest <= onTime {
            if steps[index] < first.step { first = (steps[index], offsets[index]) }
            if steps[index] > final.step { final = (steps[index], offsets[index]) }
        }
        var pace = Double(median)
        if final.step - first.step >= Int64(Self.samples / 2) {
            pace += Double(final.offset - first.offset) / Double(final.step - first.step)
        }
        var spread: Int64 = 0
        for index in 0..<Self.samples where offsets[index] - earliest <= onTime {
            let fromLine = Double(offsets[index] - final.offset) - Double(steps[index] - final.step) * (pace - Double(median))
            spread = max(spread, Int64(abs(fromLine)))
        }
        interval = UInt64(pace)
        jitter = UInt64(spread)
        let anchor = Int64(bitPattern: last) + final.offset + final.step * Int64(median)
        expected = UInt64(anchor + Int64((Double(1 - final.step) * pace).rounded()))
    }
}
