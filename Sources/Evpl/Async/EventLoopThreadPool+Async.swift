#if canImport(Glibc)
import Glibc
#endif

extension EventLoopThreadPool {
    /// ``shutdownGracefully(timeout:)`` for async code, without blocking
    /// the calling task's thread: the loops shut down and are joined on a
    /// thread of its own, and the task resumes with the report.
    ///
    /// Tasks on the pool's loops see their connections finish and end
    /// while this waits. Await it from a task that does not run on one of
    /// the pool's loops (its loop would be gone before it could resume);
    /// doing so traps.
    public func gracefulShutdown(timeout: Duration) async -> ShutdownReport {
        await gracefulShutdown(timeout: timeout, linger: nil)
    }

    /// ``gracefulShutdown(timeout:)`` with a linger: see
    /// ``shutdownGracefully(timeout:linger:)``.
    public func gracefulShutdown(timeout: Duration, linger: Duration?) async -> ShutdownReport {
        precondition(!executors.contains { $0.isLoopThread }, "gracefulShutdown awaited on one of the pool's own loops")
        return await withUnsafeContinuation { continuation in
            do throws(EvplError) {
                let thread = try LoopThread.spawn(name: "evpl-shutdown") {
                    continuation.resume(returning: self.shutdownGracefully(timeout: timeout, linger: linger))
                }
                pthread_detach(thread)
            } catch {
                // No thread to spare: block this one instead of not shutting down.
                continuation.resume(returning: shutdownGracefully(timeout: timeout, linger: linger))
            }
        }
    }
}
