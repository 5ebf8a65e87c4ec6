extension EventLoop {
    /// Opens a stream connection to `address` and returns once it is
    /// established, for the calling task (which must run on this loop) to
    /// drive with async/await.
    ///
    /// - Parameters:
    ///   - address: where to connect.
    ///   - evplProtocol: a stream protocol and its backend.
    ///   - segmenter: splits the stream into messages; without one, each
    ///     receive returns the bytes that have arrived.
    ///   - window: unconsumed bytes at which receiving pauses.
    /// - Throws: ``EvplError``: what the callback `connect` throws, the
    ///   connect's failure (`.connectionRefused`, …), or `.cancelled` /
    ///   `.timedOut` (the attempt is then abandoned).
    nonisolated(nonsending) public func connect(
        to address: SocketAddress,
        protocol evplProtocol: EvplProtocol = .tcp,
        segmenter: Segmenter? = nil,
        window: Int = AsyncConnection.defaultWindow
    ) async throws(EvplError) -> AsyncConnection {
        let connection = try connect(to: address, protocol: evplProtocol, segmenter: nil) { _, _ in }
        let asyncConnection = AsyncConnection(connection, segmenter: segmenter, window: window)
        do throws(EvplError) {
            try await asyncConnection.waitUntilConnected()
        } catch {
            asyncConnection.close()
            throw error
        }
        return asyncConnection
    }
}

extension AsyncConnection {
    /// Suspends until the connect completes; throws its failure.
    nonisolated(nonsending) func waitUntilConnected() async throws(EvplError) {
        while !isConnected {
            if isDisconnected || connection.isClosed {
                throw failure ?? EvplError(.invalidState, operation: "connect", context: "\(connection.remoteAddress)")
            }
            try await inboundWait.wait("connect")
        }
    }
}
