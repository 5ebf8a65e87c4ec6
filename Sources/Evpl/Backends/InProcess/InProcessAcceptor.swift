#if canImport(Glibc)
import Glibc
#endif

/// The in-process backend's side of a ``Listener``: a name in the
/// process's table of in-process listeners, and the loops that take its
/// streams, in turn.
///
/// A connect hands the acceptor the server end of a new channel; the
/// acceptor passes it to the next attached loop through that loop's
/// remote queue. While no loop is attached, streams wait in a backlog of
/// at most `backlog` (the connecting side sees a reset past it, or when
/// the listener closes first).
final class InProcessAcceptor: Sendable {
    private struct State: @unchecked Sendable {
        // @unchecked: the waiting endpoints are not touched until a loop takes them.
        var attached: [ListenerCore.Attachment] = []
        var next = 0
        var closed = false
        var waiting: [InProcessStream] = []
    }

    /// The listener's name (`inproc:NAME`).
    let name: String
    private let backlog: Int
    private let state = Locked(State())

    /// Every in-process listener of the process, by name.
    private static let listeners = Locked<[String: InProcessAcceptor]>([:])

    private init(name: String, backlog: Int) {
        self.name = name
        self.backlog = backlog
    }

    /// Takes `name` for a new listener.
    ///
    /// - Throws: ``EvplError`` `.addressInUse` while another listener has it.
    static func listen(name: String, backlog: Int) throws(EvplError) -> InProcessAcceptor {
        let acceptor = InProcessAcceptor(name: name, backlog: max(1, backlog))
        let taken = listeners.withLock { listeners in
            if listeners[name] != nil { return true }
            listeners[name] = acceptor
            return false
        }
        if taken { throw EvplError(errno: EADDRINUSE, operation: "listen", context: "inproc:\(name)") }
        return acceptor
    }

    /// The listener named `name`, if one listens.
    static func named(_ name: String) -> InProcessAcceptor? {
        listeners.withLock { $0[name] }
    }

    var attachedCount: Int { state.withLock { $0.attached.count } }

    /// Hands `endpoint` to the next attached loop, or keeps it until one
    /// attaches. False, and nothing is kept, when the listener is closed or
    /// its backlog is full.
    func offer(_ endpoint: InProcessStream) -> Bool {
        let target: ListenerCore.Attachment?? = state.withLock { state in
            guard !state.closed else { return .none }
            guard !state.attached.isEmpty else {
                guard state.waiting.count < backlog else { return .none }
                state.waiting.append(endpoint)
                return .some(nil)
            }
            let chosen = state.attached[state.next % state.attached.count]
            state.next &+= 1
            return chosen
        }
        switch target {
        case .none: return false
        case .some(nil): return true
        case .some(let attachment?):
            attachment.remote.enqueue(.inProcessAccepted(endpoint, listenerID: attachment.attachmentID))
            return true
        }
    }

    func attach(_ attachment: ListenerCore.Attachment) {
        let waiting: [InProcessStream] = state.withLock { state in
            state.attached.append(attachment)
            defer { state.waiting = [] }
            return state.waiting
        }
        for endpoint in waiting {
            attachment.remote.enqueue(.inProcessAccepted(endpoint, listenerID: attachment.attachmentID))
        }
    }

    func detach(loopID: ObjectIdentifier) {
        state.withLock { $0.attached.removeAll { $0.loopID == loopID } }
    }

    /// Gives the name up; streams still waiting for a loop are reset.
    func shutdown() {
        let waiting: [InProcessStream]? = state.withLock { state in
            guard !state.closed else { return nil }
            state.closed = true
            defer { state.waiting = [] }
            return state.waiting
        }
        guard let waiting else { return }
        Self.listeners.withLock { listeners in
            if listeners[name] === self { listeners[name] = nil }
        }
        for endpoint in waiting { endpoint.refuse() }
    }
}
