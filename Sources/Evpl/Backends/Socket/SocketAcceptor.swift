import Logging
#if canImport(Glibc)
import Glibc
#endif

/// The socket backend's acceptor, on a listener's own thread: `poll` on
/// the listening socket and the listener's stop eventfd, then `accept4`
/// until the backlog is empty.
enum SocketAcceptor {
    /// Accepts on the non-blocking `listenFD`, handing each socket and its
    /// peer's address (as `accept` reported it) to `deliver`, until
    /// `stopFD` is readable or `poll` fails (told to `logger`).
    static func run(listenFD: Int32, stopFD: Int32, logger: Logger, deliver: (Int32, SocketAddress?) -> Void) {
        var fds = [pollfd(fd: listenFD, events: Int16(POLLIN), revents: 0), pollfd(fd: stopFD, events: Int16(POLLIN), revents: 0)]
        while true {
            let ready = SystemCalls.poll(&fds, 2, -1)
            if ready < 0 {
                if Glibc.errno == EINTR { continue }
                logger.error("accepting stopped", metadata: ["error": "\(EvplError.lastErrno("poll"))"])
                return
            }
            if fds[1].revents != 0 { return }
            acceptBacklog(listenFD, deliver: deliver)
        }
    }

    /// Accepts until `EAGAIN`; out of descriptors, leaves the rest in the
    /// backlog for a moment.
    private static func acceptBacklog(_ listenFD: Int32, deliver: (Int32, SocketAddress?) -> Void) {
        var storage = sockaddr_storage()
        while true {
            var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
            let client = withUnsafeMutablePointer(to: &storage) { pointer in
                pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { SystemCalls.accept(listenFD, $0, &length) }
            }
            if client < 0 {
                switch Glibc.errno {
                case EINTR, ECONNABORTED: continue
                case EMFILE, ENFILE, ENOBUFS, ENOMEM:
                    usleep(10_000)
                    return
                default:
                    return
                }
            }
            let peer = withUnsafeMutablePointer(to: &storage) { pointer in
                pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { SocketAddress($0, length: length) }
            }
            deliver(client, peer)
        }
    }
}
