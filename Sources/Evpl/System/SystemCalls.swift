import CEvplLinux
import CLibAIO
#if canImport(Glibc)
import Glibc
#endif

/// The one way the socket and block back ends reach the kernel for the
/// calls that move data or create connections.
///
/// Each wrapper is the system call itself in release builds. Test builds
/// (`EVPL_FAULT_INJECTION`) first ask the calling thread's ``FaultPlan``,
/// which can make the call fail with any `errno` or run on fewer bytes, so
/// the error paths behind `EINTR`, `EAGAIN`, short counts, `ENOMEM`,
/// `EMFILE` and `ENOSPC` run on demand instead of when the kernel happens
/// to produce them. io_uring operations are faulted where they are
/// submitted (see `URing`).
enum SystemCalls {
    /// `read(2)`.
    @inline(__always)
    static func read(_ fd: Int32, _ buffer: UnsafeMutableRawPointer?, _ count: Int) -> Int {
        var count = count
        #if EVPL_FAULT_INJECTION
        if let failed = FaultPlan.apply(.read, fd: fd, limiting: &count) { return failed }
        #endif
        return Glibc.read(fd, buffer, count)
    }

    /// `recv(2)` with `MSG_DONTWAIT` (faulted as ``SystemCall/read``): never
    /// blocks, also on the blocking sockets of the io_uring backend.
    @inline(__always)
    static func receive(_ fd: Int32, _ buffer: UnsafeMutableRawPointer?, _ count: Int) -> Int {
        var count = count
        #if EVPL_FAULT_INJECTION
        if let failed = FaultPlan.apply(.read, fd: fd, limiting: &count) { return failed }
        #endif
        return Glibc.recv(fd, buffer, count, Int32(MSG_DONTWAIT))
    }

    /// Whether `fd`'s peer has ended its stream with nothing left unread:
    /// a `recv` with `MSG_PEEK` of one byte reads 0.
    static func peekEndOfStream(_ fd: Int32) -> Bool {
        var byte: UInt8 = 0
        return Glibc.recv(fd, &byte, 1, Int32(MSG_PEEK | MSG_DONTWAIT)) == 0
    }

    /// `send(2)` of one range (faulted as ``SystemCall/sendmsg``).
    @inline(__always)
    static func send(_ fd: Int32, _ buffer: UnsafeRawPointer?, _ count: Int, _ flags: Int32) -> Int {
        var count = count
        #if EVPL_FAULT_INJECTION
        if let failed = FaultPlan.apply(.sendmsg, fd: fd, limiting: &count) { return failed }
        #endif
        return Glibc.send(fd, buffer, count, flags)
    }

    /// `sendmsg(2)`.
    @inline(__always)
    static func sendmsg(_ fd: Int32, _ message: UnsafeMutablePointer<msghdr>, _ flags: Int32) -> Int {
        #if EVPL_FAULT_INJECTION
        var limit = Int.max
        if let failed = FaultPlan.apply(.sendmsg, fd: fd, limiting: &limit) { return failed }
        if limit < Int.max {
            return withIOVecs(message.pointee.msg_iov, count: Int(message.pointee.msg_iovlen), cappedAt: limit) { vectors, count in
                var capped = message.pointee
                capped.msg_iov = vectors
                capped.msg_iovlen = count
                return Glibc.sendmsg(fd, &capped, flags)
            }
        }
        #endif
        return Glibc.sendmsg(fd, message, flags)
    }

    /// `accept4(2)` of a non-blocking, close-on-exec socket.
    @inline(__always)
    static func accept(_ fd: Int32, _ address: UnsafeMutablePointer<sockaddr>, _ length: UnsafeMutablePointer<socklen_t>) -> Int32 {
        #if EVPL_FAULT_INJECTION
        var unused = 0
        if let failed = FaultPlan.apply(.accept, fd: fd, limiting: &unused) { return Int32(failed) }
        #endif
        return cevpl_accept(fd, address, length)
    }

    /// `connect(2)`.
    @inline(__always)
    static func connect(_ fd: Int32, _ address: UnsafePointer<sockaddr>, _ length: socklen_t) -> Int32 {
        #if EVPL_FAULT_INJECTION
        var unused = 0
        if let failed = FaultPlan.apply(.connect, limiting: &unused) { return Int32(failed) }
        #endif
        return Glibc.connect(fd, address, length)
    }

    /// `sendmmsg(2)` of `count` datagrams; a short count sends fewer.
    @inline(__always)
    static func sendmmsg(_ fd: Int32, _ headers: UnsafeMutablePointer<msghdr>, _ count: Int, _ flags: Int32) -> Int32 {
        var count = count
        #if EVPL_FAULT_INJECTION
        if let failed = FaultPlan.apply(.sendmmsg, fd: fd, limiting: &count) { return Int32(failed) }
        #endif
        return cevpl_sendmmsg(fd, headers, UInt32(count), flags)
    }

    /// One `recvmmsg(2)` of up to two datagrams (see `cevpl_recv_two`).
    @inline(__always)
    static func receiveTwo(_ fd: Int32, _ first: UnsafeMutableRawPointer?, _ firstLength: Int,
                           _ second: UnsafeMutableRawPointer?, _ secondLength: Int,
                           _ senders: UnsafeMutablePointer<sockaddr_storage>, _ senderLengths: UnsafeMutablePointer<socklen_t>,
                           _ lengths: UnsafeMutablePointer<Int>) -> Int32 {
        #if EVPL_FAULT_INJECTION
        var unused = 0
        if let failed = FaultPlan.apply(.recvmmsg, fd: fd, limiting: &unused) { return Int32(failed) }
        #endif
        return cevpl_recv_two(fd, first, firstLength, second, secondLength, senders, senderLengths, lengths)
    }

    /// `io_submit(2)` through libaio: the number of blocks taken, or a
    /// negative `errno`. A short count takes fewer.
    @inline(__always)
    static func ioSubmit(_ context: io_context_t, _ count: Int, _ blocks: UnsafeMutablePointer<UnsafeMutablePointer<iocb>?>?) -> Int {
        var count = count
        #if EVPL_FAULT_INJECTION
        if FaultPlan.apply(.ioSubmit, limiting: &count) != nil { return -Int(errno) }
        #endif
        return Int(io_submit(context, count, blocks))
    }

    /// `preadv(2)`.
    @inline(__always)
    static func preadv(_ fd: Int32, _ vectors: UnsafePointer<iovec>, _ count: Int32, _ offset: UInt64) -> Int {
        vectored(.preadv, vectors, count) { Glibc.preadv(fd, $0, $1, off_t(offset)) }
    }

    /// `preadv2(2)` with `RWF_NOWAIT`: bytes read or a negative `errno`
    /// (faulted as ``SystemCall/preadv``).
    @inline(__always)
    static func preadvNowait(_ fd: Int32, _ vectors: UnsafePointer<iovec>, _ count: Int32, _ offset: UInt64) -> Int {
        #if EVPL_FAULT_INJECTION
        var limit = Int.max
        if FaultPlan.apply(.preadv, limiting: &limit) != nil { return -Int(errno) }
        if limit < Int.max {
            return withIOVecs(vectors, count: Int(count), cappedAt: limit) { cevpl_preadv_nowait(fd, $0, Int32($1), Int64(offset)) }
        }
        #endif
        return cevpl_preadv_nowait(fd, vectors, count, Int64(offset))
    }

    /// `pwritev(2)`.
    @inline(__always)
    static func pwritev(_ fd: Int32, _ vectors: UnsafePointer<iovec>, _ count: Int32, _ offset: UInt64) -> Int {
        vectored(.pwritev, vectors, count) { Glibc.pwritev(fd, $0, $1, off_t(offset)) }
    }

    /// Runs a vectored transfer `call` that returns -1 with `errno` set on failure.
    @inline(__always)
    private static func vectored(_ call: SystemCall, _ vectors: UnsafePointer<iovec>, _ count: Int32,
                                 _ transfer: (UnsafePointer<iovec>, Int32) -> Int) -> Int {
        #if EVPL_FAULT_INJECTION
        var limit = Int.max
        if let failed = FaultPlan.apply(call, limiting: &limit) { return failed }
        if limit < Int.max {
            return withIOVecs(vectors, count: Int(count), cappedAt: limit) { transfer($0, Int32($1)) }
        }
        #endif
        return transfer(vectors, count)
    }

    /// `fdatasync(2)`.
    @inline(__always)
    static func fdatasync(_ fd: Int32) -> Int32 {
        #if EVPL_FAULT_INJECTION
        var unused = 0
        if let failed = FaultPlan.apply(.fdatasync, limiting: &unused) { return Int32(failed) }
        #endif
        return Glibc.fdatasync(fd)
    }

    #if EVPL_FAULT_INJECTION
    /// Calls `body` with a copy of `vectors` that describes at most `limit`
    /// bytes (at least one vector, so a call still reaches the kernel).
    private static func withIOVecs<Result>(_ vectors: UnsafePointer<iovec>?, count: Int, cappedAt limit: Int,
                                           _ body: (UnsafeMutablePointer<iovec>, Int) -> Result) -> Result {
        var capped: [iovec] = []
        var remaining = limit
        for index in 0..<count where remaining > 0 || capped.isEmpty {
            var vector = vectors.unsafelyUnwrapped[index]
            vector.iov_len = min(vector.iov_len, remaining)
            remaining -= vector.iov_len
            capped.append(vector)
        }
        return capped.withUnsafeMutableBufferPointer { body($0.baseAddress.unsafelyUnwrapped, $0.count) }
    }
    #endif
}
