import CEvplLinux
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// A thread-safe wake-up of a loop: any thread rings, the loop runs the
/// doorbell's callback on its own thread. Rings that arrive before the loop
/// gets to them coalesce into one callback.
public final class Doorbell: PollSource {
    /// The `Sendable` handle other threads ring.
    public let ringer: DoorbellRinger
    let handler: (Doorbell) -> Void
    unowned let loop: EventLoop
    private var token: UInt64 = 0
    /// Whether the doorbell is still registered with its loop.
    public private(set) var isActive = true

    init(loop: EventLoop, handler: @escaping (Doorbell) -> Void) throws(EvplError) {
        self.loop = loop
        self.handler = handler
        self.ringer = try DoorbellRinger()
        self.token = try loop.register(fd: ringer.fd, events: UInt32(EPOLLIN.rawValue), source: self)
    }

    /// Unregisters the doorbell; rings after this are ignored. Safe inside
    /// its own callback or another doorbell's.
    public func remove() {
        guard isActive else { return }
        isActive = false
        loop.unregister(token: token, fd: ringer.fd)
    }

    func handleEvents(_ events: UInt32) {
        guard isActive else { return }
        SystemCalls.drainEventFD(ringer.fd)
        handler(self)
    }
}

/// Rings a ``Doorbell`` from any thread. The eventfd it writes to stays open
/// as long as any ringer or the doorbell exists, so ringing a removed
/// doorbell is harmless.
public final class DoorbellRinger: Sendable {
    let fd: Int32

    init() throws(EvplError) {
        let fd = SystemCalls.eventfd(0, Int32(EFD_NONBLOCK | EFD_CLOEXEC))
        guard fd >= 0 else { throw EvplError.lastErrno("eventfd", context: "doorbell") }
        self.fd = fd
    }

    deinit { SystemCalls.close(fd) }

    /// Wakes the doorbell's loop and schedules its callback.
    public func ring() {
        SystemCalls.signalEventFD(fd)
    }
}

extension EventLoop {
    /// Adds a doorbell whose `handler` runs on this loop after each ring.
    public func addDoorbell(_ handler: @escaping (Doorbell) -> Void) throws(EvplError) -> Doorbell {
        checkLoopThread()
        return try Doorbell(loop: self, handler: handler)
    }
}
