import Evpl
import ServiceLifecycle
#if canImport(Glibc)
import Glibc
#endif

/// Runs an ``Evpl/EventLoopThreadPool`` as a swift-service-lifecycle
/// `Service`, so a `ServiceGroup` starts and stops the loops with the rest
/// of an application.
///
/// On graceful shutdown (SIGTERM, when the group is configured for it) the
/// listeners close first, so no new connection arrives; then every loop
/// finishes its connections (queued bytes delivered, then the end of
/// stream) and its block requests in flight, for at most `shutdownTimeout`;
/// then the loops stop and ``run()`` returns. Cancelling the task that runs
/// the service stops the loops at once.
public final class EventLoopPoolService<ThreadState>: Service, Sendable {
    private let pool: EventLoopThreadPool<ThreadState>
    private let listeners: [Listener]
    private let shutdownTimeout: Duration
    private let linger: Duration?
    private let outcome = Locked(Outcome())

    private struct Outcome: Sendable {
        var report: ShutdownReport?
        var waiter: CheckedContinuation<Void, Never>?
        var stopping = false
    }

    /// Wraps a running pool and the listeners that feed it.
    ///
    /// - Parameters:
    ///   - pool: the loops; the service owns their shutdown from here.
    ///   - listeners: closed first when the service shuts down.
    ///   - shutdownTimeout: how long connections get to finish before what
    ///     is left is closed abortively.
    ///   - linger: how long a connection whose end of stream went out waits
    ///     for the peer's before it is closed (an idle keep-alive client);
    ///     `nil` waits until `shutdownTimeout`.
    public init(pool: EventLoopThreadPool<ThreadState>, listeners: [Listener] = [], shutdownTimeout: Duration = .seconds(10), linger: Duration? = nil) {
        self.pool = pool
        self.listeners = listeners
        self.shutdownTimeout = shutdownTimeout
        self.linger = linger
    }

    /// What the graceful shutdown achieved, once ``run()`` returned after one.
    public var shutdownReport: ShutdownReport? { outcome.withLock { $0.report } }

    /// Serves until a graceful shutdown (or cancellation) has stopped every loop.
    public func run() async throws {
        await withTaskCancellationHandler {
            await withGracefulShutdownHandler {
                await withCheckedContinuation { continuation in
                    let finished = outcome.withLock { outcome in
                        if outcome.report != nil { return true }
                        outcome.waiter = continuation
                        return false
                    }
                    if finished { continuation.resume() }
                }
            } onGracefulShutdown: {
                self.shutDown(graceful: true)
            }
        } onCancel: {
            self.shutDown(graceful: false)
        }
    }

    /// Shuts the pool down on a thread of its own (the pool's shutdown
    /// blocks until every loop has stopped), then wakes ``run()``.
    private func shutDown(graceful: Bool) {
        let first = outcome.withLock { outcome in
            defer { outcome.stopping = true }
            return !outcome.stopping
        }
        guard first else { return }
        do throws(EvplError) {
            pthread_detach(try LoopThread.spawn(name: "evpl-shutdown") { self.stopPool(graceful: graceful) })
        } catch {
            stopPool(graceful: graceful)
        }
    }

    private func stopPool(graceful: Bool) {
        for listener in listeners { listener.close() }
        let report: ShutdownReport
        if graceful {
            report = pool.shutdownGracefully(timeout: shutdownTimeout, linger: linger)
        } else {
            pool.stop()
            report = ShutdownReport()
        }
        let waiter = outcome.withLock { outcome in
            outcome.report = report
            defer { outcome.waiter = nil }
            return outcome.waiter
        }
        waiter?.resume()
    }
}
