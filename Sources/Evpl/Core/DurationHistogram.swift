/// A histogram of durations that forgets: microsecond buckets, four to
/// each power of two, halved every ``decayEvery`` samples so that it
/// follows what the loop sees now. What ``AdaptiveWait`` keeps of the gaps
/// between arrivals and of how late timers wake.
struct DurationHistogram {
    /// Buckets: under 1 us, 1, 2 and 3 us, then four to each power of two up
    /// to 2^21 us (a second or two; longer durations share the last).
    static let buckets = 80

    /// Samples recorded between two halvings.
    let decayEvery: Int
    private var counts = [Double](repeating: 0, count: DurationHistogram.buckets)
    /// Samples since the last halving.
    private(set) var sinceDecay = 0
    /// The sum of the counts.
    private var total = 0.0

    init(decayEvery: Int) {
        self.decayEvery = decayEvery
    }

    mutating func record(_ duration: UInt64) {
        counts[Self.bucket(of: duration)] += 1
        total += 1
        sinceDecay += 1
        if sinceDecay == decayEvery {
            sinceDecay = 0
            for index in counts.indices { counts[index] *= 0.5 }
            total *= 0.5
        }
    }

    /// The duration `fraction` of the samples are within, placed within its
    /// bucket as if its samples were spread evenly; `nil` when empty.
    func percentile(_ fraction: Double) -> UInt64? {
        guard total > 0 else { return nil }
        let target = fraction * total
        var seen = 0.0
        var index = 0
        while index < Self.buckets - 1 && seen + counts[index] < target {
            seen += counts[index]
            index += 1
        }
        let (low, high) = Self.bounds(of: index)
        let within = counts[index] > 0 ? (target - seen) / counts[index] : 1
        return UInt64(Double(low) + within * Double(high - low))
    }

    static func bucket(of duration: UInt64) -> Int {
        let microseconds = duration / 1_000
        guard microseconds >= 4 else { return Int(microseconds) }
        let octave = 63 - microseconds.leadingZeroBitCount
        let quarter = Int((microseconds >> (octave - 2)) & 3)
        return min(buckets - 1, 4 + (octave - 2) * 4 + quarter)
    }

    /// The durations bucket `index` holds, in nanoseconds: [low, high).
    static func bounds(of index: Int) -> (UInt64, UInt64) {
        guard index >= 4 else { return (UInt64(index) * 1_000, UInt64(index + 1) * 1_000) }
        let octave = (index - 4) / 4 + 2
        let quarter = UInt64((index - 4) % 4)
        return ((4 + quarter) << (octave - 2) * 1_000, (5 + quarter) << (octave - 2) * 1_000)
    }
}
