import CEvplLinux
#if canImport(Glibc)
import Glibc
#endif

/// A loop's epoll set: the descriptors it watches (sockets of the socket
/// backend, doorbells, the remote queue's eventfd, caller-owned fds), the
/// source each one's events go to, and the arrays one wait fills.
///
/// Every backend's loop has one: io_uring waits on it through a multishot
/// poll of ``fd``, so it belongs to the loop, not to the socket backend.
/// It is stored inline in ``EventLoop`` and freed by ``close()``.
struct EpollSet {
    /// The epoll descriptor.
    let fd: Int32
    private var sources = PollSourceTable()
    private let masks: UnsafeMutablePointer<UInt32>
    private let tokens: UnsafeMutablePointer<UInt64>
    /// The most events one wait reports.
    let capacity: Int

    /// Creates an empty set whose waits report up to `capacity` events.
    init(capacity: Int) throws(EvplError) {
        let fd = SystemCalls.epollCreate(Int32(EPOLL_CLOEXEC))
        guard fd >= 0 else { throw EvplError.lastErrno("epoll_create1") }
        self.fd = fd
        self.capacity = capacity
        masks = .allocate(capacity: capacity)
        tokens = .allocate(capacity: capacity)
    }

    /// Closes the descriptor and frees the event arrays; once, as the loop goes.
    func close() {
        SystemCalls.close(fd)
        masks.deallocate()
        tokens.deallocate()
    }

    /// Watches `descriptor` for `events`, delivered to `source`; returns
    /// the token that names the registration.
    mutating func add(_ descriptor: Int32, events: UInt32, source: PollSource) throws(EvplError) -> UInt64 {
        let token = sources.insert(source)
        if SystemCalls.epollCtl(fd, EPOLL_CTL_ADD, descriptor, events, token) != 0 {
            let error = EvplError.lastErrno("epoll_ctl add")
            sources.remove(token: token)
            throw error
        }
        return token
    }

    /// How many descriptors the set watches.
    var count: Int { sources.count }

    /// Changes the events watched for a registration.
    func modify(_ descriptor: Int32, events: UInt32, token: UInt64) throws(EvplError) {
        if SystemCalls.epollCtl(fd, EPOLL_CTL_MOD, descriptor, events, token) != 0 {
            throw EvplError.lastErrno("epoll_ctl mod")
        }
    }

    /// Forgets a registration. Closing a descriptor removes it from the
    /// set; pass `descriptor` to remove one that stays open.
    mutating func remove(token: UInt64, descriptor: Int32? = nil) {
        if let descriptor {
            _ = SystemCalls.epollCtl(fd, EPOLL_CTL_DEL, descriptor, 0, 0)
        }
        sources.remove(token: token)
    }

    /// Waits up to `timeoutNanoseconds` (0 polls, -1 blocks) and returns how
    /// many events came, or -1 with `errno` set.
    @inline(__always)
    func wait(timeoutNanoseconds: Int64) -> Int {
        Int(SystemCalls.epollWait(fd, masks, tokens, Int32(capacity), timeoutNanoseconds))
    }

    /// The source of event `index` of the last wait (`nil` when it was
    /// removed since) and its event mask.
    @inline(__always)
    func event(at index: Int) -> (source: PollSource?, events: UInt32) {
        (sources.source(for: tokens[index]), masks[index])
    }
}
