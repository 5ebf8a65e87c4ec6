import CEvplLinux
#if canImport(Glibc)
import Glibc
#endif

/// Thin, throwing wrappers over the socket system calls the epoll backend uses.
enum SocketOps {
    static func makeSocket(family: Int32, type: Int32, operation: String, context: String) throws(EvplError) -> Int32 {
        let fd = SystemCalls.socket(family, type | Int32(SOCK_NONBLOCK.rawValue | SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw EvplError.lastErrno(operation, context: context) }
        return fd
    }

    /// Sets `O_NONBLOCK` again, for a socket io_uring turned out not to drive.
    static func setNonBlocking(_ fd: Int32) {
        let flags = fcntl(fd, F_GETFL)
        if flags >= 0 { _ = fcntl(fd, F_SETFL, flags | O_NONBLOCK) }
    }

    /// Clears `O_NONBLOCK`: io_uring does its own waiting on the sockets it drives.
    static func setBlocking(_ fd: Int32) {
        let flags = fcntl(fd, F_GETFL)
        if flags >= 0 { _ = fcntl(fd, F_SETFL, flags & ~O_NONBLOCK) }
    }

    static func setOption(_ fd: Int32, _ level: Int32, _ name: Int32, _ value: Int32) {
        var value = value
        _ = setsockopt(fd, level, name, &value, socklen_t(MemoryLayout<Int32>.size))
    }

    static func bind(_ fd: Int32, to address: SocketAddress) -> Int32 {
        address.withSockAddr { SystemCalls.bind(fd, $0, $1) == 0 ? 0 : Glibc.errno }
    }

    static func localAddress(of fd: Int32) -> SocketAddress? {
        var storage = sockaddr_storage()
        var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
        return withUnsafeMutablePointer(to: &storage) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { raw in
                getsockname(fd, raw, &length) == 0 ? SocketAddress(raw, length: length) : nil
            }
        }
    }

    static func peerAddress(of fd: Int32) -> SocketAddress? {
        var storage = sockaddr_storage()
        var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
        return withUnsafeMutablePointer(to: &storage) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { raw in
                getpeername(fd, raw, &length) == 0 ? SocketAddress(raw, length: length) : nil
            }
        }
    }

    static func pendingError(of fd: Int32) -> Int32 {
        var value: Int32 = 0
        var length = socklen_t(MemoryLayout<Int32>.size)
        if getsockopt(fd, SOL_SOCKET, SO_ERROR, &value, &length) != 0 { return Glibc.errno }
        return value
    }

    /// Arranges for `close` to reset the connection instead of lingering.
    static func setAbortiveClose(_ fd: Int32) {
        var linger = Glibc.linger(l_onoff: 1, l_linger: 0)
        _ = setsockopt(fd, SOL_SOCKET, SO_LINGER, &linger, socklen_t(MemoryLayout<Glibc.linger>.size))
    }

    /// Errors from `connect` that mean "nobody answered": they end in a
    /// `disconnected` event rather than a thrown error.
    static func isConnectFailure(_ code: Int32) -> Bool {
        switch code {
        case ECONNREFUSED, ENOENT, ETIMEDOUT, ENETUNREACH, EHOSTUNREACH, ECONNRESET, EAGAIN:
            return true
        default:
            return false
        }
    }
}
