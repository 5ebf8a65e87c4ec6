import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// Pool memory shared by every loop of a process: each loop's
/// ``BufferPool`` reserves from it (a megabyte at a time) before it takes
/// buffers beyond what it holds, so a process with many loops stays within
/// one bound however its peers spread over them. Each TLS connection is
/// charged 48 KiB, an estimate of what OpenSSL holds for it outside the
/// pool.
///
/// At the budget, a pool behaves as at its own ceiling (receives pause,
/// copying sends throw `.resourceExhausted`), and a loop whose connections
/// already wait for memory refuses new ones (closes them at once, counted
/// in ``EventLoop/Statistics/admissionRefusals``) instead of queueing them
/// behind a stall.
public final class MemoryBudget: Sendable, Hashable, CustomStringConvertible {
    /// The most bytes the loops sharing this budget may hold together.
    public let limit: Int
    private let reserved = Atomic<Int>(0)

    /// A budget of `limit` bytes, for loops that are given it in their
    /// ``EvplConfig/memoryBudget``.
    public init(limit: Int) {
        self.limit = max(0, limit)
    }

    /// Bytes reserved now by the loops that share the budget.
    public var bytesReserved: Int { reserved.load(ordering: .relaxed) }

    /// Whether `bytes` more would fit now.
    public func hasRoom(for bytes: Int) -> Bool { bytesReserved + bytes <= limit }

    /// Takes `bytes` from the budget; false when they do not fit.
    package func reserve(_ bytes: Int) -> Bool {
        var current = reserved.load(ordering: .relaxed)
        while current + bytes <= limit {
            let (exchanged, original) = reserved.compareExchange(expected: current, desired: current + bytes, ordering: .relaxed)
            if exchanged { return true }
            current = original
        }
        return false
    }

    /// Gives back `bytes` taken with ``reserve(_:)``.
    package func release(_ bytes: Int) {
        reserved.subtract(bytes, ordering: .relaxed)
    }

    /// The budget every loop of the process shares by default:
    /// ``defaultLimit``, or `EVPL_PROCESS_POOL_MAX_BYTES` (read through
    /// ``EvplConfig/fromProcessEnvironment()``).
    public static let process = shared(limit: defaultLimit)

    /// The one budget of the process with this limit: loops configured
    /// alike share it.
    public static func shared(limit: Int) -> MemoryBudget {
        budgets.withLock { budgets in
            if let budget = budgets[limit] { return budget }
            let budget = MemoryBudget(limit: limit)
            budgets[limit] = budget
            return budget
        }
    }

    private static let budgets = Mutex<[Int: MemoryBudget]>([:])

    /// A quarter of the memory the process may use: the least of physical
    /// memory, the cgroup's `memory.max` and the address-space limit
    /// (`ulimit -v`); at least 64 MiB.
    public static let defaultLimit: Int = max(64 << 20, usableMemory / 4)

    /// The least of physical memory, the cgroup v2 limit and `RLIMIT_AS`.
    static var usableMemory: Int {
        var usable = Int.max
        let pages = sysconf(Int32(_SC_PHYS_PAGES))
        let pageSize = sysconf(Int32(_SC_PAGESIZE))
        if pages > 0 && pageSize > 0 { usable = pages * pageSize }
        if let cgroup = cgroupMemoryLimit { usable = min(usable, cgroup) }
        var limit = rlimit()
        if getrlimit(__rlimit_resource_t(RLIMIT_AS.rawValue), &limit) == 0 && limit.rlim_cur < rlim_t(Int.max) {
            usable = min(usable, Int(clamping: limit.rlim_cur))
        }
        return usable
    }

    /// `memory.max` of the cgroup v2 the process runs in, when it is a number.
    private static var cgroupMemoryLimit: Int? {
        guard let file = fopen("/sys/fs/cgroup/memory.max", "r") else { return nil }
        defer { fclose(file) }
        var line = [CChar](repeating: 0, count: 64)
        guard fgets(&line, Int32(line.count), file) != nil else { return nil }
        let text = String(decoding: line.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        return text.split(whereSeparator: { $0 == "\n" || $0 == " " }).first.flatMap { Int($0) }
    }

    /// Budgets are equal when they are the same object.
    public static func == (lhs: MemoryBudget, rhs: MemoryBudget) -> Bool { lhs === rhs }

    /// Hashes the object's identity.
    public func hash(into hasher: inout Hasher) { hasher.combine(ObjectIdentifier(self)) }

    /// The limit and what is reserved.
    public var description: String { "\(bytesReserved) of \(limit) bytes reserved" }
}
