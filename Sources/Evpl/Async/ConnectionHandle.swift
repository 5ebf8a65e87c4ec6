extension AsyncConnection {
    /// A `Sendable` handle through which any task, on any executor, may
    /// write to this connection; see ``ConnectionHandle``.
    public var handle: ConnectionHandle {
        ConnectionHandle(connection: WeakConnection(self), executor: executor)
    }
}

/// A `Sendable` way to write to an ``AsyncConnection`` from any task: a
/// reply computed on another executor goes out through it without a
/// hand-written registry of connections.
///
/// Each call made off the connection's loop moves there first (with
/// `withTaskExecutorPreference`) and comes back; on the loop it runs
/// directly. Writes from one task arrive in the order it made them, and
/// wait for room above the high watermark like the owner's writes. The
/// handle does not keep the connection alive: once its owner has let it go,
/// writes throw `.invalidState`.
public struct ConnectionHandle: Sendable {
    private let connection: WeakConnection
    /// The executor of the connection's loop.
    public let executor: EventLoopExecutor

    init(connection: WeakConnection, executor: EventLoopExecutor) {
        self.connection = connection
        self.executor = executor
    }

    /// Queues a copy of `bytes` as one message; see
    /// ``AsyncConnection/write(_:)-([UInt8])``.
    public func write(_ bytes: [UInt8]) async throws(EvplError) {
        try await onLoop { connection throws(EvplError) in try await connection.write(bytes) }
    }

    /// Finishes the connection: queued bytes go out, then the end of stream.
    public func finish() async {
        try? await onLoop { connection throws(EvplError) in connection.finish() }
    }

    /// Closes the connection at once; see ``AsyncConnection/close()``.
    public func close() async {
        try? await onLoop { connection throws(EvplError) in connection.close() }
    }

    private func onLoop(_ body: nonisolated(nonsending) (AsyncConnection) async throws(EvplError) -> Void) async throws(EvplError) {
        if executor.isLoopThread { return try await body(connection.open()) }
        let failure: EvplError? = await withTaskExecutorPreference(executor) {
            do throws(EvplError) {
                try await body(connection.open())
                return nil
            } catch {
                return error
            }
        }
        if let failure { throw failure }
    }
}

/// A weak reference to an ``AsyncConnection``, opened only on its loop.
///
/// `@unchecked Sendable` because the reference is loaded only on the
/// connection's loop thread (``open()`` checks), so the connection is
/// never used, or released, on another thread.
final class WeakConnection: @unchecked Sendable {
    private weak var connection: AsyncConnection?
    private let executor: EventLoopExecutor

    init(_ connection: AsyncConnection) {
        self.connection = connection
        self.executor = connection.executor
    }

    /// The connection, on its loop thread, while its owner keeps it.
    func open() throws(EvplError) -> AsyncConnection {
        executor.checkIsolated()
        guard let connection else {
            throw EvplError(.invalidState, operation: "write", context: "the connection's owner has let it go")
        }
        return connection
    }
}
