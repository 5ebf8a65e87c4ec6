// The stored properties these read stay internal: a `package` stored
// property of a class is reached through dynamic exclusivity checks, which
// the hot path would pay on every I/O.
extension Connection {
    /// The connection's security layer, if its protocol names one.
    package var streamSecurity: (any StreamSecurity)? { security }

    /// Whether the connection is ending with an error whose alert or last
    /// bytes are still being flushed.
    package var isFailing: Bool { failing }

    /// Whether receiving is paused for any reason (a ``StreamSecurity``
    /// stops decrypting then, and the ciphertext waits).
    package var isReceivePaused: Bool { !receivePauses.isEmpty }

    /// Whether bytes wait in the send queue (records a ``StreamSecurity``
    /// wrote that the transport has not yet taken).
    package var hasQueuedWireBytes: Bool { !sendQueue.isEmpty }

    /// Appends `bytes` to the send queue as they are (records a
    /// ``StreamSecurity`` produced), outside any message count. They may
    /// take the pool's receive reserve: the application's sends were
    /// checked against it (``checkWireRoom(for:)``) before they were
    /// encrypted, and handshake messages, tickets and alerts must go out
    /// for the connection to go on.
    ///
    /// - Throws: ``EvplError`` `.resourceExhausted` when the pool cannot hold them.
    package func queueWireBytes(copying bytes: UnsafeRawBufferPointer) throws(EvplError) {
        try sendQueue.append(copying: bytes, pool: loop.bufferPool, trackMessage: false, intoReserve: true)
    }

    /// Refuses, before anything is queued, `count` bytes the pool could
    /// not hold in the send queue while leaving its receive reserve
    /// (``BufferPool/receiveReserve``); with `intoReserve`, the reserve
    /// counts as room (bytes that must go out for the connection to make
    /// progress).
    ///
    /// - Throws: ``EvplError`` `.resourceExhausted`.
    package func checkWireRoom(for count: Int, intoReserve: Bool = false) throws(EvplError) {
        try sendQueue.checkRoom(for: count, in: loop.bufferPool, intoReserve: intoReserve)
    }
}
