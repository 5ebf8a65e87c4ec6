import CEvplLinux
#if canImport(Glibc)
import Glibc
#endif

/// Readiness events for a file descriptor the caller owns (a pipe, a
/// signalfd, a device). Edge-triggered: a callback reports that readiness
/// changed, so drain the fd until `EAGAIN`.
public final class FDWatch: PollSource {
    /// Readiness reported to the handler.
    public struct Events: OptionSet, Sendable, Hashable {
        /// The raw epoll bits.
        public let rawValue: UInt32
        /// Creates events from epoll bits.
        public init(rawValue: UInt32) { self.rawValue = rawValue }
        /// Data can be read (or the peer hung up).
        public static let readable = Events(rawValue: UInt32(EPOLLIN.rawValue))
        /// Data can be written.
        public static let writable = Events(rawValue: UInt32(EPOLLOUT.rawValue))
        /// An error is pending on the fd (always reported, whatever the interest).
        public static let error = Events(rawValue: UInt32(EPOLLERR.rawValue))
        /// The other end hung up (always reported, whatever the interest).
        public static let hangUp = Events(rawValue: UInt32(EPOLLHUP.rawValue))
    }

    /// The watched descriptor; the watch never closes it.
    public let fd: Int32
    let handler: (FDWatch, Events) -> Void
    unowned let loop: EventLoop
    private var token: UInt64 = 0
    /// Readiness the watch asks for.
    public private(set) var interest: Events
    /// Whether the watch is still registered.
    public private(set) var isActive = true

    init(loop: EventLoop, fd: Int32, interest: Events, handler: @escaping (FDWatch, Events) -> Void) throws(EvplError) {
        self.loop = loop
        self.fd = fd
        self.interest = interest
        self.handler = handler
        self.token = try loop.register(fd: fd, events: interest.rawValue | UInt32(EPOLLET.rawValue), source: self)
    }

    /// Changes which readiness is reported.
    public func setInterest(_ events: Events) throws(EvplError) {
        guard isActive else { return }
        interest = events
        try loop.modify(fd: fd, events: events.rawValue | UInt32(EPOLLET.rawValue), token: token)
    }

    /// Stops watching; the fd stays open. Safe from inside the callback.
    public func remove() {
        guard isActive else { return }
        isActive = false
        loop.unregister(token: token, fd: fd)
    }

    func handleEvents(_ events: UInt32) {
        guard isActive else { return }
        handler(self, Events(rawValue: events))
    }
}

extension EventLoop {
    /// Watches a caller-owned `fd` for `interest`.
    public func watch(fd: Int32, interest: FDWatch.Events, _ handler: @escaping (FDWatch, FDWatch.Events) -> Void) throws(EvplError) -> FDWatch {
        checkLoopThread()
        return try FDWatch(loop: self, fd: fd, interest: interest, handler: handler)
    }
}
