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
}
