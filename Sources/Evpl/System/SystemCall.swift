/// A system call (or, for io_uring, a kind of operation) that reaches the
/// kernel through ``SystemCalls``: what a test's fault plan names to make
/// the n-th such call fail or come up short.
enum SystemCall: Hashable, Sendable, CaseIterable {
    /// `read` on a stream socket: the socket backend's receive.
    case read
    /// `send` and `sendmsg` on a stream socket.
    case sendmsg
    /// `accept4` on a listening socket.
    case accept
    /// `connect` of a new stream socket.
    case connect
    /// `recvmmsg` on a datagram socket.
    case recvmmsg
    /// `sendmmsg` on a datagram socket.
    case sendmmsg
    /// `io_submit` of the libaio engine; a short count is fewer blocks taken.
    case ioSubmit
    /// `preadv`, and `preadv2` with `RWF_NOWAIT`, of the psync engine.
    case preadv
    /// `pwritev` of the psync engine.
    case pwritev
    /// `fdatasync` of the psync engine.
    case fdatasync
    /// An io_uring stream or datagram receive (`RECV`, `RECVMSG`).
    case uringReceive
    /// An io_uring send (`SEND`, `SENDMSG` and their zero-copy forms).
    case uringSend
    /// An io_uring block read (`READV`, `READ_FIXED`).
    case uringRead
    /// An io_uring block write (`WRITEV`, `WRITE_FIXED`).
    case uringWrite
    /// An io_uring `FSYNC`.
    case uringSync
    /// `close(2)` of a socket or descriptor the library made. The
    /// descriptor is released all the same, as the kernel does.
    case close
    /// The loop's wait without a ring: `epoll_wait` (or `epoll_pwait2`).
    case epollWait
    /// The loop's wait with a ring: the `io_uring_enter` that submits and
    /// sleeps for completions.
    case uringEnter

    // Set-up calls, where running out of descriptors, memory or threads
    // (EMFILE, ENFILE, ENOMEM, EAGAIN) shows.

    /// `socket(2)` for a listener, a connection or a datagram endpoint.
    case socket
    /// `bind(2)` of a listener or a datagram endpoint.
    case bind
    /// `listen(2)`.
    case listen
    /// `eventfd(2)`: a loop's wake-up, a doorbell, a listener's stop signal,
    /// a block engine's completions.
    case eventfd
    /// `signalfd(2)` of ``TerminationSignals``.
    case signalfd
    /// `epoll_create1(2)` of a new loop.
    case epollCreate
    /// `epoll_ctl(2)` adding or changing a watched descriptor.
    case epollCtl
    /// `mmap(2)` of a buffer pool slab.
    case mmap
    /// `pthread_create(3)` of a loop or pool thread.
    case threadCreate
    /// `io_uring_queue_init_params` of a loop's or an acceptor's ring.
    case uringSetup
    /// `io_uring_register_buf_ring` of a ring's provided buffers.
    case uringRegisterBuffers
    /// `io_setup(2)` of the libaio engine.
    case ioSetup
    /// `open(2)` of a block device or file.
    case open
    /// `poll(2)` of a listener's acceptor thread and of ``TerminationSignals``.
    case poll
}
