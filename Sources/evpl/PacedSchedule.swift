import ArgumentParser
#if canImport(Glibc)
import Glibc
#endif

/// How an open-loop client spaces its requests.
enum Arrivals: String, Sendable, CaseIterable, ExpressibleByArgument {
    /// Exactly one interval apart.
    case fixed
    /// A Poisson process: exponentially distributed gaps of the same mean,
    /// as independent clients produce.
    case poisson
}

/// When an open-loop client sends its next request: a schedule fixed in
/// advance, so that a stalled server does not slow the client down and its
/// stall shows in every latency measured from the scheduled time (as wrk2
/// does), instead of being hidden by requests never sent.
struct PacedSchedule {
    /// The scheduled time of the next request, on the monotonic clock.
    private(set) var next: UInt64
    private let meanInterval: Double
    private let arrivals: Arrivals
    /// xorshift64* state: the gaps of a Poisson schedule, without a lock
    /// or an allocation per request.
    private var random: UInt64

    /// A schedule of `rate` requests a second from `start`; `seed` makes
    /// each thread's Poisson gaps its own.
    init(rate: Double, arrivals: Arrivals, start: UInt64, seed: UInt64) {
        meanInterval = 1e9 / rate
        self.arrivals = arrivals
        random = seed | 1
        next = start
        advance()
    }

    /// Moves ``next`` one gap on.
    mutating func advance() {
        switch arrivals {
        case .fixed:
            next &+= UInt64(meanInterval.rounded())
        case .poisson:
            random ^= random >> 12
            random ^= random << 25
            random ^= random >> 27
            let uniform = Double((random &* 0x2545_F491_4F6C_DD1D) >> 11) / Double(1 << 53)
            // -ln(1 - U) is exponential with mean 1; 1 - U is never 0.
            next &+= UInt64((-Glibc.log(1 - uniform) * meanInterval).rounded())
        }
    }
}
