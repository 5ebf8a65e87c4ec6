#if EVPL_FAULT_INJECTION
import CEvplLinux
#if canImport(Glibc)
import Glibc
#endif

/// What a fault plan makes one system call do instead of its real work.
enum InjectedFault: Equatable, Sendable {
    /// The call does nothing and fails with this `errno` (for io_uring, the
    /// operation completes with its negation).
    case error(Int32)
    /// The call runs on at most this many bytes (for `io_submit` and
    /// `sendmmsg`: this many requests), so it reports a short count.
    case shortCount(Int)

    var isShortCount: Bool {
        if case .shortCount = self { return true }
        return false
    }
}

/// A test's script of system-call failures: "the 3rd `sendmsg` from now
/// fails with `EAGAIN`", "the next 2 `read`s return at most 7 bytes".
///
/// Only test builds have it (`EVPL_FAULT_INJECTION`, defined in debug
/// builds): release builds call the kernel directly, at no cost. A plan
/// applies to the thread it is installed on (``installed(_:)``) and to the
/// threads the library starts from there (listener and psync threads), so
/// tests running side by side never see each other's faults.
final class FaultPlan: Sendable {
    private struct Rule {
        let call: SystemCall
        /// The call count (of `call`, on this plan) the fault first applies to.
        let first: Int
        let last: Int
        let fault: InjectedFault
    }

    private struct State {
        var rules: [Rule] = []
        var calls: [SystemCall: Int] = [:]
        var injected: [SystemCall: Int] = [:]
        var owedEdges: [Int32] = []
    }

    private let state = Locked(State())

    init() {}

    /// Makes the `occurrence`th call to `call` from now on (1 is the next
    /// one), and the `times - 1` calls after it, do `fault` instead.
    func inject(_ fault: InjectedFault, on call: SystemCall, at occurrence: Int = 1, times: Int = 1) {
        precondition(occurrence >= 1 && times >= 1, "occurrence and times count from 1")
        state.withLock { state in
            let first = state.calls[call, default: 0] + occurrence
            state.rules.append(Rule(call: call, first: first, last: first + times - 1, fault: fault))
        }
    }

    /// How many calls to `call` the plan has seen.
    func calls(to call: SystemCall) -> Int {
        state.withLock { $0.calls[call, default: 0] }
    }

    /// How many faults the plan has injected into calls to `call`.
    func faultsInjected(into call: SystemCall) -> Int {
        state.withLock { $0.injected[call, default: 0] }
    }

    /// Counts one call to `call` and returns the fault it must show, if any.
    func fault(for call: SystemCall) -> InjectedFault? {
        state.withLock { state in
            let number = state.calls[call, default: 0] + 1
            state.calls[call] = number
            guard let rule = state.rules.first(where: { $0.call == call && $0.first <= number && number <= $0.last }) else { return nil }
            state.injected[call, default: 0] += 1
            return rule.fault
        }
    }

    /// Runs `body` with the plan installed on the calling thread.
    func installed<Result>(_ body: () throws -> Result) rethrows -> Result {
        let previous = cevpl_thread_fault_plan()
        cevpl_set_thread_fault_plan(Unmanaged.passUnretained(self).toOpaque())
        defer { cevpl_set_thread_fault_plan(previous) }
        return try withExtendedLifetime(self) { try body() }
    }

    /// The plan installed on the calling thread, if any.
    static var current: FaultPlan? {
        guard let pointer = cevpl_thread_fault_plan() else { return nil }
        return Unmanaged<FaultPlan>.fromOpaque(pointer).takeUnretainedValue()
    }

    /// For a set-up call that moves no bytes: the injected `errno`, if the
    /// plan fails this call, or `nil` to make it.
    static func failure(of call: SystemCall) -> Int32? {
        var unused = 0
        return apply(call, limiting: &unused) == nil ? nil : errno
    }

    /// For a wrapped call on `fd` (-1 for none) about to move `count` bytes
    /// (or requests): counts the call, and applies its fault. Returns -1
    /// with `errno` set for an injected error (the caller returns it without
    /// calling the kernel); lowers `count` for a short count and returns
    /// `nil`, as it does when no fault applies.
    ///
    /// An injected `EAGAIN` or short count on a socket says "full" (or
    /// "empty") of a socket that is not: a real one would report readiness
    /// later, an edge the loop waits for. The plan owes that edge, and the
    /// loop delivers it (``takeOwedEdges(where:)``).
    static func apply(_ call: SystemCall, fd: Int32 = -1, limiting count: inout Int) -> Int? {
        guard let plan = current else { return nil }
        let fault = plan.fault(for: call)
        if fd >= 0 && (fault == .error(EAGAIN) || fault?.isShortCount == true) {
            plan.state.withLock { $0.owedEdges.append(fd) }
        }
        switch fault {
        case .error(let code)?:
            errno = code
            return -1
        case .shortCount(let limit)?:
            count = min(count, limit)
            return nil
        case nil:
            return nil
        }
    }

    /// Takes the owed readiness edges (see ``apply(_:fd:limiting:)``) of
    /// the descriptors `owned` accepts; the others stay owed.
    func takeOwedEdges(where owned: (Int32) -> Bool) -> [Int32] {
        state.withLock { state in
            guard !state.owedEdges.isEmpty else { return [] }
            let taken = state.owedEdges.filter(owned)
            state.owedEdges.removeAll(where: owned)
            return taken
        }
    }
}

/// A thread's fault plan, carried into the threads it starts.
struct InheritedFaultPlan: Sendable {
    private let plan: FaultPlan?

    /// The calling thread's plan.
    init() { plan = FaultPlan.current }

    /// Runs `body`, the whole life of a new thread, under the plan.
    func adopted(_ body: () -> Void) {
        guard let plan else { return body() }
        plan.installed(body)
    }
}
#else
/// Release builds have no fault plans: nothing to carry into a new thread.
struct InheritedFaultPlan: Sendable {
    @inline(__always) init() {}
    @inline(__always) func adopted(_ body: () -> Void) { body() }
}
#endif

#if EVPL_FAULT_INJECTION
extension EventLoop {
    /// Re-arms the sockets of this loop that the fault plan told "would
    /// block" while they were ready: `EPOLL_CTL_MOD` reports what is ready
    /// now, the edge a real full or empty socket would have produced.
    func deliverOwedEdges() {
        guard let plan = FaultPlan.current else { return }
        let open = connections.all()
        for fd in plan.takeOwedEdges(where: { fd in open.contains { $0.fd == fd } }) {
            guard let connection = open.first(where: { $0.fd == fd }), case .socket = connection.transport else { continue }
            try? modify(fd: fd, events: Connection.pollEvents, token: connection.token)
        }
    }
}
#else
extension EventLoop {
    /// Release builds have no fault plans.
    @inline(__always) func deliverOwedEdges() {}
}
#endif
