import Synchronization

extension Listener {
    /// Serves every connection this listener accepts on the loops of
    /// `executors`, each in a task of its own on the loop that receives it,
    /// until the calling task is cancelled.
    ///
    /// Give it a task of its own, one free to run while the caller waits:
    /// from top-level code, which runs on the main actor, that is
    /// `Task.detached { await listener.serve(...) }`.
    ///
    /// Each connection is in pull mode from the moment it reaches its loop,
    /// and `handler` runs inside ``AsyncConnection/executeThenClose(_:)``:
    /// when it returns the connection finishes, when it throws the
    /// connection is closed. An error that ends the connection from
    /// outside (a reset, a timeout, a TLS failure, a shutdown) is logged at
    /// debug level on the loop's logger; any other is the handler's own
    /// failure and is logged at error level, and written to standard error
    /// (one line a second at most) while the logger is the silent default.
    /// Cancelling the calling task detaches the loops; the connections
    /// being served go on until their handlers end (a pool's graceful
    /// shutdown finishes them).
    ///
    /// - Parameters:
    ///   - executors: the loops to serve on, usually a pool's
    ///     ``EventLoopThreadPool/executors``.
    ///   - segmenter: makes each connection's segmenter (segmenters keep
    ///     per-connection state and are not `Sendable`).
    ///   - window: each connection's receive window.
    ///   - handler: serves one connection, on its loop.
    public func serve(
        on executors: [EventLoopExecutor],
        segmenter: @escaping @Sendable () -> Segmenter? = { nil },
        window: Int = AsyncConnection.defaultWindow,
        _ handler: nonisolated(nonsending) @escaping @Sendable (AsyncConnection) async throws -> Void
    ) async {
        for executor in executors {
            executor.remote.execute { loop in
                loop.attach(to: self) { connection in
                    let accepted = LoopBound(value: AsyncConnection(connection, segmenter: segmenter(), window: window))
                    Task(executorPreference: loop.executor) {
                        let connection = accepted.value
                        do {
                            try await connection.executeThenClose { connection in try await handler(connection) }
                        } catch {
                            HandlerFailures.report(error, peer: connection.connection.remoteAddress, logger: connection.connection.loop.logger)
                        }
                    }
                }
            }
        }
        await Self.waitForCancellation()
        for executor in executors {
            executor.remote.execute { loop in loop.detach(from: self) }
        }
    }

    /// Suspends until the calling task is cancelled.
    private static func waitForCancellation() async {
        let waiter = Mutex<(cancelled: Bool, continuation: UnsafeContinuation<Void, Never>?)>((false, nil))
        await withTaskCancellationHandler {
            await withUnsafeContinuation { continuation in
                let resumeNow = waiter.withLock { state in
                    if state.cancelled { return true }
                    state.continuation = continuation
                    return false
                }
                if resumeNow { continuation.resume() }
            }
        } onCancel: {
            let continuation = waiter.withLock { state in
                state.cancelled = true
                defer { state.continuation = nil }
                return state.continuation
            }
            continuation?.resume()
        }
    }
}
