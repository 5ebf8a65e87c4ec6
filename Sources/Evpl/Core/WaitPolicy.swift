/// How a loop waits when an iteration finds nothing to do: poll again at
/// once (spin, paying CPU), or sleep in the kernel (paying a wake-up, tens
/// of microseconds across CPUs, when the next event comes).
///
/// Set it for every loop with ``EvplConfig/waitPolicy`` or
/// `EVPL_WAIT_POLICY=adaptive|fixed|sleep` (default `adaptive`). Whatever the policy, a loop
/// with work queued polls, a pinned loop (``EventLoop/pin()``) always
/// polls, and ``EvplConfig/spinNanoseconds`` bounds every spin: 0 means
/// never spin.
public enum WaitPolicy: String, Sendable, Hashable, CaseIterable, CustomStringConvertible {
    /// Learns from the loop's own history whether spinning pays (the
    /// default). After each burst of activity it spins only while the gaps
    /// it has seen between bursts are within a few wake-ups, as measured on
    /// this machine; when events come at a steady pace of a few wake-ups it
    /// sleeps on a timer until just before the next one is due; under
    /// lighter load it sleeps. Spins that find nothing stay under
    /// ``EvplConfig/idleSpinShare`` of the loop's time, beyond what the
    /// spins that found work saved.
    case adaptive
    /// Spins for ``EvplConfig/spinNanoseconds`` after the last activity,
    /// then sleeps: the lowest latency under steady load, a core's worth
    /// of CPU at a few thousand requests a second.
    case fixed
    /// Never spins: the least CPU, a wake-up on every event that finds the
    /// loop idle.
    case sleep

    /// The name `EVPL_WAIT_POLICY` takes.
    public var description: String { rawValue }
}
