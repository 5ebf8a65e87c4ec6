extension AsyncConnection {
    /// Queues a copy of `bytes` as one message, then suspends while more
    /// than ``EvplConfig/sendHighWatermark`` bytes wait to be sent.
    ///
    /// - Throws: ``EvplError``: the error that ended the connection,
    ///   `.invalidState` after ``finish()``, `.cancelled` or `.timedOut`
    ///   when the wait for room is cut short (the bytes stay queued).
    nonisolated(nonsending) public func write(_ bytes: [UInt8]) async throws(EvplError) {
        try checkWritable()
        try connection.send(bytes)
        try await waitForRoom()
    }

    /// Queues a copy of `bytes` as one message; see ``write(_:)-([UInt8])``.
    nonisolated(nonsending) public func write(copying bytes: UnsafeRawBufferPointer) async throws(EvplError) {
        try checkWritable()
        try connection.send(copying: bytes)
        try await waitForRoom()
    }

    /// Queues `iovec` without copying, taking over the caller's reference
    /// (released once written, or at once when this throws); see
    /// ``write(_:)-([UInt8])``.
    nonisolated(nonsending) public func write(taking iovec: IOVec) async throws(EvplError) {
        do throws(EvplError) {
            try checkWritable()
        } catch {
            iovec.release()
            throw error
        }
        try connection.send(taking: iovec)
        try await waitForRoom()
    }

    /// Queues `iovecs` as one message without copying, taking over the
    /// caller's references; see ``write(taking:)-(IOVec)``.
    nonisolated(nonsending) public func write(taking iovecs: [IOVec]) async throws(EvplError) {
        do throws(EvplError) {
            try checkWritable()
        } catch {
            for iovec in iovecs { iovec.release() }
            throw error
        }
        try connection.send(taking: iovecs)
        try await waitForRoom()
    }

    /// Queues received bytes (from this loop, any connection) as one
    /// message without copying: each pooled piece gets a reference of its
    /// own, so `bytes` stays valid; see ``write(_:)-([UInt8])``. An echo is
    /// `try await connection.write(message)`.
    nonisolated(nonsending) public func write(_ bytes: ReceivedBytes) async throws(EvplError) {
        try checkWritable()
        var failure: EvplError?
        bytes.forEachIOVec { piece in
            guard failure == nil else { return }
            piece.retain()
            do throws(EvplError) {
                try connection.send(taking: piece)
            } catch {
                failure = error
            }
        }
        if let failure { throw failure }
        try await waitForRoom()
    }

    /// Queues a copy of received bytes as one message; see ``write(_:)-([UInt8])``.
    /// Unlike ``write(_:)-(ReceivedBytes)``, the received buffers are not
    /// held until the copy is sent.
    nonisolated(nonsending) public func write(copying bytes: ReceivedBytes) async throws(EvplError) {
        try checkWritable()
        var failure: EvplError?
        bytes.forEachSegment { piece in
            guard failure == nil else { return }
            do throws(EvplError) {
                try connection.send(copying: piece)
            } catch {
                failure = error
            }
        }
        if let failure { throw failure }
        try await waitForRoom()
    }

    private func checkWritable() throws(EvplError) {
        connection.checkThread()
        if let failure { throw failure }
    }

    /// Suspends until the send queue is at or below the high watermark, or
    /// the connection ends (its queue is then released; the next call
    /// reports why).
    nonisolated(nonsending) private func waitForRoom() async throws(EvplError) {
        let limit = connection.loop.config.sendHighWatermark
        while connection.queuedBytes > limit {
            guard connection.isOpen else { return }
            let wait = spareWriterWaits.popLast() ?? SuspendedTask(loop: connection.loop)
            writersWaiting.append(wait)
            defer {
                writersWaiting.removeAll { $0 === wait }
                spareWriterWaits.append(wait)
            }
            try await wait.wait("write")
        }
    }
}
