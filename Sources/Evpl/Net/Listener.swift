import CEvplLinux
import Synchronization
import Logging
#if canImport(Glibc)
import Glibc
#endif

/// How a ``Listener`` picks the loop for each new connection.
public enum SteeringPolicy: Sendable, Hashable {
    /// Each attached loop in turn.
    case roundRobin
}

/// Accepts stream connections on an address and hands each one to one of the
/// loops attached to it, where it lives for good.
///
/// Accepting runs on the listener's own thread; a connection reaches its loop
/// through the loop's remote queue, and the loop's attach callback installs
/// its handlers before `connected` is delivered. Loops attach with
/// ``EventLoop/attach(to:_:)`` and detach with ``EventLoop/detach(from:)``.
/// While no loop is attached, clients wait in the kernel's backlog: none is
/// accepted and dropped.
public final class Listener: Sendable {
    /// The bound address (with the real port when port 0 was asked for).
    public let address: SocketAddress
    /// The protocol connections use.
    public let evplProtocol: EvplProtocol
    /// How connections are spread over attached loops.
    public let steering: SteeringPolicy
    /// The backend its connections run on (`auto` resolved).
    public let backend: EvplProtocol.Backend
    /// The handshake and idle limits every accepted connection starts with
    /// (an attach callback may change a connection's own).
    public let timeouts: ConnectionTimeouts
    private let acceptor: Acceptor

    /// Who accepts: a kernel socket's thread, or the in-process table.
    private enum Acceptor: Sendable {
        case kernel(ListenerCore)
        case inProcess(InProcessAcceptor)
    }

    /// Binds and listens on `address`, and starts accepting. An
    /// in-process listener (``EvplProtocol/Transport/inproc``) takes its
    /// name in the process instead, and needs no socket or thread.
    ///
    /// `logger` hears what the accepting thread cannot report any other
    /// way (an io_uring acceptor that falls back to `poll` and `accept4`,
    /// accepting that stops on a `poll` error); silent unless given.
    /// `timeouts` bound how long each accepted connection may take to
    /// finish its handshake and stay silent (none by default; servers
    /// facing untrusted peers want ``ConnectionTimeouts/server``).
    ///
    /// - Throws: ``EvplError`` `.addressInUse` when something already listens
    ///   there, `.invalidAddress` for an address the protocol cannot use,
    ///   `.unavailable` for a missing backend, or the failing system call.
    public init(address: SocketAddress, protocol evplProtocol: EvplProtocol = .tcp, steering: SteeringPolicy = .roundRobin, backlog: Int32 = 4096,
                timeouts: ConnectionTimeouts = .none, logger: Logger = .evplSilent) throws(EvplError) {
        guard evplProtocol.isStream else {
            throw EvplError(.invalidArgument, operation: "listen", context: "\(evplProtocol) is not a stream protocol")
        }
        try evplProtocol.validate(address, operation: "listen")
        try evplProtocol.validateSecurity(server: true, operation: "listen")
        let backend = try evplProtocol.resolvedBackend()
        if case .inProcess(let name) = address.storage {
            self.address = address
            self.evplProtocol = evplProtocol
            self.steering = steering
            self.backend = backend
            self.timeouts = timeouts
            self.acceptor = .inProcess(try InProcessAcceptor.listen(name: name, backlog: Int(backlog)))
            return
        }
        let fd = try SocketOps.makeSocket(family: address.family, type: Int32(SOCK_STREAM.rawValue), operation: "listen", context: "\(address)")
        if !address.isUnix {
            SocketOps.setOption(fd, SOL_SOCKET, SO_REUSEADDR, 1)
        }
        var socketFile: UnixSocketFile?
        do throws(EvplError) {
            try Self.bind(fd, to: address)
            if case .unixPath(let path) = address.storage { socketFile = UnixSocketFile(at: path) }
            if SystemCalls.listen(fd, backlog) != 0 {
                throw EvplError.lastErrno("listen", context: "\(address)")
            }
        } catch {
            SystemCalls.close(fd)
            socketFile?.remove()
            throw error
        }
        self.address = SocketOps.localAddress(of: fd) ?? address
        self.evplProtocol = evplProtocol
        self.steering = steering
        self.backend = backend
        self.timeouts = timeouts
        if backend == .ioUring { SocketOps.setBlocking(fd) }
        let core = try ListenerCore(fd: fd, multishot: backend == .ioUring, logger: logger, socketFile: socketFile)
        try core.start()
        self.acceptor = .kernel(core)
    }

    deinit {
        close()
    }

    /// Stops accepting and closes the socket. Connections already handed to
    /// loops are unaffected. Closing twice is harmless. A listener on a Unix
    /// path removes the socket file its bind made, unless the path names
    /// another file by then (another listener's, bound after this one's
    /// file was removed).
    public func close() {
        switch acceptor {
        case .kernel(let core): core.shutdown()
        case .inProcess(let table): table.shutdown()
        }
    }

    /// Number of loops currently attached.
    public var attachedLoopCount: Int {
        switch acceptor {
        case .kernel(let core): core.attachedCount
        case .inProcess(let table): table.attachedCount
        }
    }

    func attach(loopID: ObjectIdentifier, remote: EventLoopRemote, attachmentID: UInt64) {
        let attachment = ListenerCore.Attachment(loopID: loopID, remote: remote, attachmentID: attachmentID)
        switch acceptor {
        case .kernel(let core): core.attach(attachment)
        case .inProcess(let table): table.attach(attachment)
        }
    }

    func detach(loopID: ObjectIdentifier) {
        switch acceptor {
        case .kernel(let core): core.detach(loopID: loopID)
        case .inProcess(let table): table.detach(loopID: loopID)
        }
    }

    private static func bind(_ fd: Int32, to address: SocketAddress) throws(EvplError) {
        var status = SocketOps.bind(fd, to: address)
        if status == EADDRINUSE, case .unixPath(let path) = address.storage, isStaleSocket(path) {
            unlink(path)
            status = SocketOps.bind(fd, to: address)
        }
        if status != 0 {
            throw EvplError(errno: status, operation: "bind", context: "\(address)")
        }
    }

    /// A socket file left behind by a listener that is gone: the path is a
    /// socket (anything else there, a regular file above all, is never
    /// removed) and no live socket is bound to it in `/proc/net/unix`.
    /// (Probing with `connect` would hand a live listener a spurious
    /// connection.)
    static func isStaleSocket(_ path: String) -> Bool {
        var status = stat()
        guard lstat(path, &status) == 0, status.st_mode & S_IFMT == S_IFSOCK else { return false }
        guard let file = fopen("/proc/net/unix", "r") else { return false }
        defer { fclose(file) }
        var line: UnsafeMutablePointer<CChar>?
        var capacity = 0
        defer { free(line) }
        while getline(&line, &capacity, file) > 0 {
            let text = String(cString: line!)
            if text.hasSuffix(" \(path)\n") || text.hasSuffix(" \(path)") { return false }
        }
        return true
    }
}

/// The accept thread and the attachment table, shared between the listener
/// handle and its thread.
final class ListenerCore: Sendable {
    struct Attachment: Sendable {
        let loopID: ObjectIdentifier
        let remote: EventLoopRemote
        let attachmentID: UInt64
    }

    struct State {
        var attached: [Attachment] = []
        var next = 0
        var thread: pthread_t?
        var closed = false
    }

    let fd: Int32
    let stopFD: Int32
    /// Readable once a loop attaches to a listener that had none: wakes an
    /// accepted connection waiting for a loop to go to.
    let attachedFD: Int32
    /// The Unix socket file to remove on shutdown, if it is still there.
    let socketFile: UnixSocketFile?
    /// Accept with io_uring multishot accept instead of poll + accept4.
    let multishot: Bool
    private let logger: Logger
    private let state = Locked(State())

    init(fd: Int32, multishot: Bool, logger: Logger, socketFile: UnixSocketFile?) throws(EvplError) {
        self.fd = fd
        self.multishot = multishot
        self.logger = logger
        self.socketFile = socketFile
        let stop = SystemCalls.eventfd(0, Int32(EFD_CLOEXEC | EFD_NONBLOCK))
        let attached = stop >= 0 ? SystemCalls.eventfd(0, Int32(EFD_CLOEXEC | EFD_NONBLOCK)) : -1
        guard attached >= 0 else {
            let error = EvplError.lastErrno("eventfd", context: "listener")
            if stop >= 0 { SystemCalls.close(stop) }
            SystemCalls.close(fd)
            socketFile?.remove()
            throw error
        }
        self.stopFD = stop
        self.attachedFD = attached
    }

    func start() throws(EvplError) {
        let thread: pthread_t
        do throws(EvplError) {
            thread = try LoopThread.spawn(name: "evpl-accept") { [self] in
                acceptLoop()
            }
        } catch {
            state.withLock { $0.closed = true }
            closeDescriptors()
            throw error
        }
        state.withLock { $0.thread = thread }
    }

    var attachedCount: Int { state.withLock { $0.attached.count } }

    func attach(_ attachment: Attachment) {
        let first = state.withLock { state in
            state.attached.append(attachment)
            return state.attached.count == 1
        }
        if first {
            SystemCalls.signalEventFD(attachedFD)
        }
    }

    func detach(loopID: ObjectIdentifier) {
        state.withLock { $0.attached.removeAll { $0.loopID == loopID } }
    }

    func shutdown() {
        let thread: pthread_t? = state.withLock { state in
            guard !state.closed else { return nil }
            state.closed = true
            defer { state.thread = nil }
            return state.thread
        }
        guard let thread else { return }
        SystemCalls.signalEventFD(stopFD)
        if pthread_equal(thread, pthread_self()) == 0 {
            pthread_join(thread, nil)
        } else {
            pthread_detach(thread)
        }
        closeDescriptors()
    }

    private func closeDescriptors() {
        SystemCalls.close(fd)
        SystemCalls.close(stopFD)
        SystemCalls.close(attachedFD)
        socketFile?.remove()
    }

    private func acceptLoop() {
        if multishot {
            // Setup was probed when the backend was chosen; should it still
            // fail here, fall back to poll + accept4.
            do throws(EvplError) {
                try URingAcceptor.run(listenFD: fd, stopFD: stopFD) { dispatch($0, peer: $1) }
                return
            } catch {
                logger.warning("io_uring acceptor unavailable, accepting with poll and accept4", metadata: ["error": "\(error)"])
                // accept4 below runs until EAGAIN: on a blocking socket the
                // last call would wait for the next client, and `close()` with it.
                SocketOps.setNonBlocking(fd)
            }
        }
        SocketAcceptor.run(listenFD: fd, stopFD: stopFD, logger: logger) { dispatch($0, peer: $1) }
    }

    /// Hands an accepted socket and its peer's address (as `accept`
    /// reported it) to the next attached loop.
    ///
    /// With no loop attached (before the first attaches, or after the last
    /// detached) it waits for one, and accepting waits with it: the clients
    /// behind this one stay in the kernel's backlog. Only the listener
    /// closing meanwhile closes the socket.
    private func dispatch(_ client: Int32, peer: SocketAddress?) {
        while true {
            let target: Attachment? = state.withLock { state in
                guard !state.attached.isEmpty else { return nil }
                let chosen = state.attached[state.next % state.attached.count]
                state.next &+= 1
                return chosen
            }
            if let target {
                target.remote.enqueue(.accepted(fd: client, peer: peer, listenerID: target.attachmentID))
                return
            }
            guard waitForAttachment() else {
                SystemCalls.close(client)
                return
            }
        }
    }

    /// Waits until a loop attaches (true) or the listener closes (false).
    private func waitForAttachment() -> Bool {
        var fds = [pollfd(fd: stopFD, events: Int16(POLLIN), revents: 0), pollfd(fd: attachedFD, events: Int16(POLLIN), revents: 0)]
        while SystemCalls.poll(&fds, 2, -1) < 0 {
            if Glibc.errno != EINTR { return false }
        }
        if fds[0].revents != 0 { return false }
        SystemCalls.drainEventFD(attachedFD)
        return true
    }
}

/// A loop's record of one listener it is attached to.
final class ListenerAttachment {
    let listener: Listener
    let acceptHandler: (Connection) -> Void

    init(listener: Listener, acceptHandler: @escaping (Connection) -> Void) {
        self.listener = listener
        self.acceptHandler = acceptHandler
    }
}

private let attachmentCounter = Atomic<UInt64>(1)

extension EventLoop {
    /// Attaches this loop to `listener`: some of its new connections will
    /// live here. `onAccept` runs on this loop for each one, before its
    /// `connected` event, to install the handler, segmenter and context.
    public func attach(to listener: Listener, _ onAccept: @escaping (Connection) -> Void) {
        checkLoopThread()
        detach(from: listener)
        let id = attachmentCounter.wrappingAdd(1, ordering: .relaxed).oldValue
        attachments[id] = ListenerAttachment(listener: listener, acceptHandler: onAccept)
        listener.attach(loopID: ObjectIdentifier(self), remote: remote, attachmentID: id)
    }

    /// Stops receiving new connections from `listener`. Connections already
    /// here stay.
    public func detach(from listener: Listener) {
        checkLoopThread()
        listener.detach(loopID: ObjectIdentifier(self))
        for (id, attachment) in attachments where attachment.listener === listener {
            attachments[id] = nil
        }
    }
}
