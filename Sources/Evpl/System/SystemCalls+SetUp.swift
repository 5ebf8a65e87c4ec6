import CEvplLinux
import CLibAIO
import CURing
#if canImport(Glibc)
import Glibc
#endif

/// The calls that create what the loops run on (descriptors, memory,
/// threads, rings), through the same seam as the data path: a test's
/// ``FaultPlan`` can fail any of them, so the error each set-up throws is
/// reached on demand. Each returns what the call itself returns, failures
/// included (-1 with `errno`, or a negative or positive errno as the call
/// does).
extension SystemCalls {
    /// `socket(2)`.
    static func socket(_ family: Int32, _ type: Int32, _ protocolNumber: Int32) -> Int32 {
        #if EVPL_FAULT_INJECTION
        if let code = FaultPlan.failure(of: .socket) { errno = code; return -1 }
        #endif
        return Glibc.socket(family, type, protocolNumber)
    }

    /// `bind(2)`.
    static func bind(_ fd: Int32, _ address: UnsafePointer<sockaddr>, _ length: socklen_t) -> Int32 {
        #if EVPL_FAULT_INJECTION
        if let code = FaultPlan.failure(of: .bind) { errno = code; return -1 }
        #endif
        return Glibc.bind(fd, address, length)
    }

    /// `listen(2)`.
    static func listen(_ fd: Int32, _ backlog: Int32) -> Int32 {
        #if EVPL_FAULT_INJECTION
        if let code = FaultPlan.failure(of: .listen) { errno = code; return -1 }
        #endif
        return Glibc.listen(fd, backlog)
    }

    /// `open(2)`.
    static func open(_ path: String, _ flags: Int32, _ mode: mode_t) -> Int32 {
        #if EVPL_FAULT_INJECTION
        if let code = FaultPlan.failure(of: .open) { errno = code; return -1 }
        #endif
        return Glibc.open(path, flags, mode)
    }

    /// `poll(2)` of the threads that wait on a few descriptors (acceptors,
    /// signals). `EFAULT` and `EINVAL` would mean a bad array: a bug.
    static func poll(_ fds: UnsafeMutablePointer<pollfd>, _ count: Int, _ timeoutMilliseconds: Int32) -> Int32 {
        #if EVPL_FAULT_INJECTION
        if let code = FaultPlan.failure(of: .poll) { errno = code; return -1 }
        #endif
        let ready = Glibc.poll(fds, nfds_t(count), timeoutMilliseconds)
        if ready < 0 && (Glibc.errno == EFAULT || Glibc.errno == EINVAL) {
            stopWithMessage("poll of a descriptor array the library built wrong")
        }
        return ready
    }

    /// `eventfd(2)`.
    static func eventfd(_ initial: UInt32, _ flags: Int32) -> Int32 {
        #if EVPL_FAULT_INJECTION
        if let code = FaultPlan.failure(of: .eventfd) { errno = code; return -1 }
        #endif
        return CEvplLinux.eventfd(initial, flags)
    }

    /// Blocks SIGINT and SIGTERM on the calling thread and opens a
    /// `signalfd(2)` for them (an injected failure blocks nothing).
    static func terminationSignalFD() -> Int32 {
        #if EVPL_FAULT_INJECTION
        if let code = FaultPlan.failure(of: .signalfd) { errno = code; return -1 }
        #endif
        return cevpl_signalfd_for_termination()
    }

    /// `epoll_create1(2)`.
    static func epollCreate(_ flags: Int32) -> Int32 {
        #if EVPL_FAULT_INJECTION
        if let code = FaultPlan.failure(of: .epollCreate) { errno = code; return -1 }
        #endif
        return CEvplLinux.epoll_create1(flags)
    }

    /// `epoll_ctl(2)` adding or modifying `fd` with `token` as its data.
    static func epollCtl(_ epollFD: Int32, _ operation: Int32, _ fd: Int32, _ events: UInt32, _ token: UInt64) -> Int32 {
        #if EVPL_FAULT_INJECTION
        if operation != EPOLL_CTL_DEL, let code = FaultPlan.failure(of: .epollCtl) { errno = code; return -1 }
        #endif
        return cevpl_epoll_ctl(epollFD, operation, fd, events, token)
    }

    /// The loop's `epoll_wait(2)` (`epoll_pwait2` where the kernel has it)
    /// of up to `capacity` events, with a nanosecond timeout.
    @inline(__always)
    static func epollWait(_ epollFD: Int32, _ masks: UnsafeMutablePointer<UInt32>, _ tokens: UnsafeMutablePointer<UInt64>,
                          _ capacity: Int32, _ timeoutNanoseconds: Int64) -> Int32 {
        #if EVPL_FAULT_INJECTION
        if let code = FaultPlan.failure(of: .epollWait) { errno = code; return -1 }
        #endif
        return cevpl_epoll_wait(epollFD, masks, tokens, capacity, timeoutNanoseconds)
    }

    /// `mmap(2)` of `length` bytes of private, anonymous, read-write memory.
    static func mapAnonymous(_ length: Int) -> UnsafeMutableRawPointer? {
        #if EVPL_FAULT_INJECTION
        if let code = FaultPlan.failure(of: .mmap) { errno = code; return MAP_FAILED }
        #endif
        return mmap(nil, length, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0)
    }

    /// `pthread_create(3)` with default attributes: 0 or an errno.
    static func threadCreate(
        _ thread: UnsafeMutablePointer<pthread_t>,
        _ start: @convention(c) (UnsafeMutableRawPointer?) -> UnsafeMutableRawPointer?,
        _ argument: UnsafeMutableRawPointer?
    ) -> Int32 {
        #if EVPL_FAULT_INJECTION
        if let code = FaultPlan.failure(of: .threadCreate) { return code }
        #endif
        return pthread_create(thread, nil, start, argument)
    }

    /// `io_uring_queue_init_params`: 0 or a negative errno.
    static func uringSetup(_ entries: UInt32, _ ring: UnsafeMutablePointer<io_uring>, _ params: UnsafeMutablePointer<io_uring_params>) -> Int32 {
        #if EVPL_FAULT_INJECTION
        if let code = FaultPlan.failure(of: .uringSetup) { return -code }
        #endif
        return io_uring_queue_init_params(entries, ring, params)
    }

    /// `io_uring_register_buf_ring` of `entries` buffers as `group`, with
    /// `flags`: the mapped ring, or `nil` with the errno in `error`.
    static func uringRegisterBuffers(_ ring: UnsafeMutablePointer<io_uring>, _ entries: UInt32, _ group: UInt16, flags: UInt16,
                                     _ error: UnsafeMutablePointer<Int32>) -> UnsafeMutablePointer<io_uring_buf_ring>? {
        #if EVPL_FAULT_INJECTION
        if let code = FaultPlan.failure(of: .uringRegisterBuffers) {
            error.pointee = code
            return nil
        }
        #endif
        return cevpl_uring_register_buffer_ring(ring, entries, group, flags, error)
    }

    /// `io_setup(2)` of libaio: 0 or a negative errno.
    static func ioSetup(_ depth: Int32, _ context: UnsafeMutablePointer<io_context_t?>) -> Int32 {
        #if EVPL_FAULT_INJECTION
        if let code = FaultPlan.failure(of: .ioSetup) { return -code }
        #endif
        return io_setup(depth, context)
    }
}
