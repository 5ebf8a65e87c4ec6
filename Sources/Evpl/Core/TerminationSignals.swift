import CEvplLinux
#if canImport(Glibc)
import Glibc
#endif

/// SIGINT and SIGTERM delivered as a readable fd instead of an async handler,
/// so servers can shut down cleanly from ordinary code.
///
/// Create it on the main thread before starting any other thread: the
/// signals are blocked in the creating thread, and threads started later
/// inherit that mask, so the signals only ever reach the fd.
///
/// In a program whose top-level code awaits, call ``wait(timeoutMilliseconds:)``
/// (or watch ``fd``) before the first `await` on the main thread: once
/// top-level code first suspends, the main thread waits inside the Swift
/// runtime (libdispatch's `dispatch_main`) with every signal unblocked, and
/// SIGINT or SIGTERM would end the process there instead of reaching the fd.
public final class TerminationSignals: Sendable {
    /// The signalfd; readable once SIGINT or SIGTERM arrived.
    public let fd: Int32

    /// Blocks SIGINT and SIGTERM and opens the signalfd.
    public init() throws(EvplError) {
        let fd = SystemCalls.terminationSignalFD()
        guard fd >= 0 else { throw EvplError.lastErrno("signalfd") }
        self.fd = fd
    }

    deinit { SystemCalls.close(fd) }

    /// Blocks the calling thread until SIGINT or SIGTERM arrives, or until
    /// `timeoutMilliseconds` passes; returns whether a signal arrived.
    @discardableResult
    public func wait(timeoutMilliseconds: Int32 = -1) -> Bool {
        var entry = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        let ready = SystemCalls.poll(&entry, 1, timeoutMilliseconds)
        guard ready > 0 else { return false }
        var info = [UInt8](repeating: 0, count: 128)
        _ = Glibc.read(fd, &info, info.count)
        return true
    }
}
