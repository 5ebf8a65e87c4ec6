import Logging
#if canImport(Glibc)
import Glibc
#endif

/// Settings shared by every event loop: buffer geometry, the hybrid-wait
/// spin window, send-queue watermarks and io_uring sizing.
///
/// The defaults need no configuration. ``fromEnvironment(_:)`` applies
/// `EVPL_*` overrides; an invalid value is an error, never silently clamped.
public struct EvplConfig: Sendable, Hashable {
    /// Where the library logs what an operator wants to know: loops starting,
    /// connections that end with an error, block devices opening, graceful
    /// shutdowns (a listener's acceptor falling back takes the listener's own
    /// logger, `Listener(address:protocol:steering:backlog:logger:)`). Never
    /// once per message or request. Silent (``Logging/Logger/evplSilent``)
    /// unless given; loops add their name as `evpl-loop` metadata. Equality
    /// and hashing ignore it.
    public var logger: Logger {
        get { storedLogger.value }
        set { storedLogger.value = newValue }
    }
    private var storedLogger = IgnoredInEquality(value: Logger.evplSilent)

    /// Size of each pooled buffer in bytes; received data and copied sends land in these.
    public var bufferSize: Int = 64 * 1024
    /// Number of buffers carved from each `mmap`ed slab.
    public var buffersPerSlab: Int = 64
    /// The ceiling on each loop's buffer pool, in bytes. At the ceiling,
    /// connections pause receiving (the peer's window closes) until a buffer
    /// is free, and copying sends throw `.resourceExhausted`; nothing
    /// crashes and nothing already accepted is dropped. The io_uring
    /// provided-buffer ring fills only from the first half of the pool.
    /// An application keeps its queued sends well below the ceiling (the
    /// memory they hold can only drain through receives that need buffers
    /// too). The default is an eighth of the machine's physical memory (at
    /// least 64 MiB), per loop.
    public var poolMaxBytes: Int = EvplConfig.defaultPoolMaxBytes
    /// The budget every loop's pool reserves from, shared across the
    /// process: the sum of the loops' pools stays within it whatever each
    /// loop's own ``poolMaxBytes`` allows. ``MemoryBudget/process`` (a
    /// quarter of the memory the process may use) unless
    /// `EVPL_PROCESS_POOL_MAX_BYTES` names another; `nil` bounds each
    /// loop by its ceiling alone.
    public var memoryBudget: MemoryBudget? = .process
    /// Free pool memory each loop keeps resident after a load; memory that
    /// stays free beyond it for a second goes back to the kernel.
    public var poolIdleBytes: Int = 8 << 20
    /// How a loop waits when it finds nothing to do. ``WaitPolicy/adaptive``
    /// (the default) learns from the loop's history whether spinning pays;
    /// ``WaitPolicy/fixed`` spins for ``spinNanoseconds`` after any
    /// activity, ``WaitPolicy/sleep`` never spins (see the hybrid-wait article).
    public var waitPolicy: WaitPolicy = .adaptive
    /// How long, in nanoseconds, a loop keeps polling without sleeping after it
    /// last saw activity: the window of ``WaitPolicy/fixed``, the most
    /// ``WaitPolicy/adaptive`` spins. 0 disables spinning: the loop sleeps
    /// whenever idle, whatever the policy.
    public var spinNanoseconds: UInt64 = 200_000
    /// Under ``WaitPolicy/adaptive``, the largest share of a loop's time
    /// (0 to 1) that spins finding nothing may take, beyond what the spins
    /// that did find work saved (a wake-up each); past it the spin window
    /// halves until the waste falls back under. An idle server with many
    /// loops burns at most this share of a CPU per loop.
    public var idleSpinShare: Double = 0.05
    /// Whether a spinning loop yields its CPU on each idle pass, so a peer on
    /// the same CPU still runs while this loop waits for it.
    public var spinYields: Bool = true
    /// Queued send bytes below which a connection reports ``ConnectionEvent/writable``,
    /// and below which a connection paused by ``sendHighWatermark`` receives again.
    public var sendLowWatermark: Int = 256 * 1024
    /// Queued send bytes above which a connection stops receiving until its
    /// queue drains below ``sendLowWatermark``: a peer that sends without
    /// reading what it is sent cannot make a connection buffer without
    /// bound. Two peers that each send more than this ahead of what they
    /// have read from the other would wait on each other for ever: keep it
    /// above the lead an application protocol allows. `Int.max` turns it off.
    public var sendHighWatermark: Int = 8 << 20
    /// `SO_SNDBUF` and `SO_RCVBUF` for every stream socket, in bytes; 0
    /// leaves the kernel's defaults (and its autotuning). Small buffers make
    /// flow control visible at once, for tests and for latency-bound peers.
    public var socketBufferBytes: Int = 0
    /// Maximum epoll events handled per poll.
    public var maxEventsPerPoll: Int = 128
    /// Submission-queue entries of each loop's io_uring.
    public var ioUringEntries: Int = 256
    /// Completion-queue entries of each loop's io_uring: room for the
    /// multishot completions of every connection the loop serves.
    public var ioUringCompletionEntries: Int = 4096
    /// Pool buffers lent to each loop's provided-buffer ring for multishot
    /// receives (a power of two).
    public var ioUringBufferRingEntries: Int = 256
    /// io_uring TCP sends of at least this many bytes are zero-copy
    /// (`SEND_ZC` for one range, `SENDMSG_ZC` for several), holding their
    /// buffers until the kernel's notification; not to a loopback peer
    /// unless ``zeroCopyToLoopback`` is set, and never on Unix streams (the
    /// kernel copies locally anyway). `Int.max` turns it off.
    public var zeroCopySendThreshold: Int = 16 * 1024
    /// Whether zero-copy sends are used toward loopback peers too. Off by
    /// default: the kernel copies data it delivers locally, so there zero-copy
    /// only adds a notification per send.
    public var zeroCopyToLoopback: Bool = false
    /// Whether each loop's io_uring gets a kernel submission-polling thread
    /// (`SQPOLL`): no syscall to submit, one more busy thread per loop.
    public var ioUringSQPoll: Bool = false

    /// The built-in defaults, ignoring the environment.
    public init() {}

    /// An eighth of physical memory, at least 64 MiB.
    public static let defaultPoolMaxBytes: Int = {
        let pages = sysconf(Int32(_SC_PHYS_PAGES))
        let pageSize = sysconf(Int32(_SC_PAGESIZE))
        guard pages > 0, pageSize > 0 else { return 1 << 30 }
        return max(64 << 20, pages * pageSize / 8)
    }()

    /// The environment variables that override a setting, with what each sets.
    public static let environmentVariables: [(name: String, meaning: String)] = [
        ("EVPL_BUFFER_SIZE", "bytes per pooled buffer (4096...16777216)"),
        ("EVPL_BUFFERS_PER_SLAB", "buffers per mmap'ed slab (1...65536)"),
        ("EVPL_POOL_MAX_BYTES", "ceiling on each loop's buffer pool, in bytes (default: physical memory / 8)"),
        ("EVPL_PROCESS_POOL_MAX_BYTES", "pool memory all loops of the process share, in bytes (default: a quarter of physical memory, the cgroup limit or ulimit -v, whichever is least)"),
        ("EVPL_POOL_IDLE_BYTES", "free pool memory kept resident after a load, in bytes"),
        ("EVPL_WAIT_POLICY", "how an idle loop waits: adaptive (learns whether spinning pays), fixed (spins EVPL_SPIN_NS after activity) or sleep"),
        ("EVPL_SPIN_NS", "the fixed policy's spin window, the most the adaptive one spins, in ns (0 = never spin)"),
        ("EVPL_IDLE_SPIN_SHARE", "percent of a loop's time the adaptive policy may spend spinning in vain (0...100)"),
        ("EVPL_SPIN_YIELD", "yield the CPU while spinning (0 or 1)"),
        ("EVPL_SEND_LOW_WATERMARK", "bytes below which writable fires and receiving resumes"),
        ("EVPL_SEND_HIGH_WATERMARK", "queued send bytes above which receiving pauses"),
        ("EVPL_SOCKET_BUFFER_BYTES", "SO_SNDBUF and SO_RCVBUF of stream sockets (0 = kernel default)"),
        ("EVPL_MAX_EVENTS", "epoll events per poll (1...256)"),
        ("EVPL_URING_ENTRIES", "io_uring submission entries per loop (8...32768)"),
        ("EVPL_URING_CQ_ENTRIES", "io_uring completion entries per loop (16...65536)"),
        ("EVPL_URING_BUFFERS", "provided receive buffers per loop, a power of two (1...32768)"),
        ("EVPL_ZEROCOPY_THRESHOLD", "bytes from which io_uring sends use SEND_ZC"),
        ("EVPL_URING_SQPOLL", "give each loop's io_uring a kernel polling thread (0 or 1)"),
    ]

    /// The defaults with `EVPL_*` overrides from `environment` applied.
    ///
    /// - Throws: ``EvplError`` with code `.invalidArgument` naming the variable
    ///   when a value does not parse or is out of range.
    public static func fromEnvironment(_ environment: [String: String]) throws(EvplError) -> EvplConfig {
        var config = EvplConfig()
        if let text = environment["EVPL_BUFFER_SIZE"] {
            config.bufferSize = try parse(text, "EVPL_BUFFER_SIZE", 4096...16_777_216)
        }
        if let text = environment["EVPL_BUFFERS_PER_SLAB"] {
            config.buffersPerSlab = try parse(text, "EVPL_BUFFERS_PER_SLAB", 1...65536)
        }
        if let text = environment["EVPL_POOL_MAX_BYTES"] {
            config.poolMaxBytes = try parse(text, "EVPL_POOL_MAX_BYTES", 4096...Int.max)
        }
        if let text = environment["EVPL_PROCESS_POOL_MAX_BYTES"] {
            config.memoryBudget = MemoryBudget.shared(limit: try parse(text, "EVPL_PROCESS_POOL_MAX_BYTES", 4096...Int.max))
        }
        if let text = environment["EVPL_POOL_IDLE_BYTES"] {
            config.poolIdleBytes = try parse(text, "EVPL_POOL_IDLE_BYTES", 0...Int.max)
        }
        if let text = environment["EVPL_WAIT_POLICY"] {
            guard let policy = WaitPolicy(rawValue: String(text.trimmingSpaces())) else {
                throw EvplError(.invalidArgument, operation: "config", context: "EVPL_WAIT_POLICY=\(text) (expected adaptive, fixed or sleep)")
            }
            config.waitPolicy = policy
        }
        if let text = environment["EVPL_IDLE_SPIN_SHARE"] {
            config.idleSpinShare = Double(try parse(text, "EVPL_IDLE_SPIN_SHARE", 0...100)) / 100
        }
        if let text = environment["EVPL_SPIN_NS"] {
            config.spinNanoseconds = UInt64(try parse(text, "EVPL_SPIN_NS", 0...60_000_000_000))
        }
        if let text = environment["EVPL_SPIN_YIELD"] {
            config.spinYields = try parse(text, "EVPL_SPIN_YIELD", 0...1) == 1
        }
        if let text = environment["EVPL_SEND_LOW_WATERMARK"] {
            config.sendLowWatermark = try parse(text, "EVPL_SEND_LOW_WATERMARK", 1...(1 << 40))
        }
        if let text = environment["EVPL_SEND_HIGH_WATERMARK"] {
            config.sendHighWatermark = try parse(text, "EVPL_SEND_HIGH_WATERMARK", 1...Int.max)
        }
        if let text = environment["EVPL_SOCKET_BUFFER_BYTES"] {
            config.socketBufferBytes = try parse(text, "EVPL_SOCKET_BUFFER_BYTES", 0...(1 << 30))
        }
        if let text = environment["EVPL_MAX_EVENTS"] {
            config.maxEventsPerPoll = try parse(text, "EVPL_MAX_EVENTS", 1...256)
        }
        if let text = environment["EVPL_URING_ENTRIES"] {
            config.ioUringEntries = try parse(text, "EVPL_URING_ENTRIES", 8...32768)
        }
        if let text = environment["EVPL_URING_CQ_ENTRIES"] {
            config.ioUringCompletionEntries = try parse(text, "EVPL_URING_CQ_ENTRIES", 16...65536)
        }
        if let text = environment["EVPL_URING_BUFFERS"] {
            config.ioUringBufferRingEntries = try parse(text, "EVPL_URING_BUFFERS", 1...32768)
        }
        if let text = environment["EVPL_ZEROCOPY_THRESHOLD"] {
            config.zeroCopySendThreshold = try parse(text, "EVPL_ZEROCOPY_THRESHOLD", 1...Int.max)
        }
        if let text = environment["EVPL_URING_SQPOLL"] {
            config.ioUringSQPoll = try parse(text, "EVPL_URING_SQPOLL", 0...1) == 1
        }
        try config.validate()
        return config
    }

    /// The defaults with overrides from this process's environment.
    public static func fromProcessEnvironment() throws(EvplError) -> EvplConfig {
        try fromEnvironment(ProcessEnvironment.current())
    }

    /// Checks every field; called by loops before they use a configuration.
    public func validate() throws(EvplError) {
        func check(_ ok: Bool, _ key: String, _ value: Any) throws(EvplError) {
            if !ok {
                throw EvplError(.invalidArgument, operation: "config", context: "\(key)=\(value)")
            }
        }
        try check((4096...16_777_216).contains(bufferSize), "bufferSize", bufferSize)
        try check((1...65536).contains(buffersPerSlab), "buffersPerSlab", buffersPerSlab)
        try check(poolMaxBytes >= bufferSize, "poolMaxBytes", poolMaxBytes)
        try check(poolIdleBytes >= 0, "poolIdleBytes", poolIdleBytes)
        try check((0...1).contains(idleSpinShare), "idleSpinShare", idleSpinShare)
        try check((0...(1 << 30)).contains(socketBufferBytes), "socketBufferBytes", socketBufferBytes)
        try check(sendLowWatermark > 0, "sendLowWatermark", sendLowWatermark)
        try check(sendHighWatermark >= sendLowWatermark, "sendHighWatermark", sendHighWatermark)
        try check((1...256).contains(maxEventsPerPoll), "maxEventsPerPoll", maxEventsPerPoll)
        try check((8...32768).contains(ioUringEntries), "ioUringEntries", ioUringEntries)
        try check((16...65536).contains(ioUringCompletionEntries) && ioUringCompletionEntries >= ioUringEntries,
                  "ioUringCompletionEntries", ioUringCompletionEntries)
        try check((1...32768).contains(ioUringBufferRingEntries) && ioUringBufferRingEntries & (ioUringBufferRingEntries - 1) == 0,
                  "ioUringBufferRingEntries", ioUringBufferRingEntries)
        try check(zeroCopySendThreshold > 0, "zeroCopySendThreshold", zeroCopySendThreshold)
    }

    private static func parse(_ text: String, _ key: String, _ range: ClosedRange<Int>) throws(EvplError) -> Int {
        guard let value = Int(text.trimmingSpaces()), range.contains(value) else {
            throw EvplError(.invalidArgument, operation: "config", context: "\(key)=\(text) (expected \(range.lowerBound)...\(range.upperBound))")
        }
        return value
    }
}

/// Per-loop settings: a name for diagnostics and thread names, and the CPUs
/// the loop's thread is pinned to.
public struct LoopConfig: Sendable, Hashable {
    /// Shown in thread names and errors.
    public var name: String
    /// CPUs the loop's thread may run on; `nil` leaves the affinity alone.
    public var cpuAffinity: [Int]?

    /// Creates a loop configuration.
    public init(name: String = "evpl", cpuAffinity: [Int]? = nil) {
        self.name = name
        self.cpuAffinity = cpuAffinity
    }
}

extension String {
    func trimmingSpaces() -> Substring {
        var view = self[...]
        while view.first == " " { view = view.dropFirst() }
        while view.last == " " { view = view.dropLast() }
        return view
    }
}
