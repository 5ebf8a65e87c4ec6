/// How a loop waits when an iteration finds nothing to do: poll again at
/// once (spin, paying CPU), or sleep in the kernel (paying a wake-up, tens
/// of microseconds across CPUs, when the next event comes).
///
/// Set it for every loop with ``EvplConfig/waitPolicy`` or
/// `EVPL_WAIT_POLICY=adaptive|fixed|sleep` (default `fixed`). Whatever the policy, a loop
/// with work queued polls, a pinned loop (``EventLoop/pin()``) always
/// polls, and ``EvplConfig/spinNanoseconds`` bounds every spin: 0 means
/// never spin.
public enum WaitPolicy: String, Sendable, Hashable, CaseIterable, CustomStringConvertible {
    /// Learns from the loop's own history whether spinning pays. After each burst of activity it spins only as long as the
    /// gaps it has seen between bursts make a spin likely to catch the next
    /// event sooner than the CPU it costs, measured against the wake-up
    /// latency it has seen on this machine; when events come at a steady
    /// pace it sleeps on a timer until just before the next one is due.
    /// Spins that find nothing stay under ``EvplConfig/idleSpinShare`` of
    /// the loop's time.
    case adaptive
    /// Spins for ``EvplConfig/spinNanoseconds`` after the last activity,
    /// then sleeps (the default): the lowest latency under steady load, a core's worth
    /// of CPU at a few thousand requests a second.
    case fixed
    /// Never spins: the least CPU, a wake-up on every event that finds the
    /// loop idle.
    case sleep

    /// The name `EVPL_WAIT_POLICY` takes.
    public var description: String { rawValue }
}
