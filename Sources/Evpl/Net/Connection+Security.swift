extension Connection {
    /// Whether receiving is paused for any reason (a ``StreamSecurity``
    /// stops decrypting then, and the ciphertext waits).
    package var isReceivePaused: Bool { !receivePauses.isEmpty }

    /// Whether bytes wait in the send queue (records a ``StreamSecurity``
    /// wrote that the transport has not yet taken).
    package var hasQueuedWireBytes: Bool { !sendQueue.isEmpty }

    /// Appends `bytes` to the send queue as they are (records a
    /// ``StreamSecurity`` produced), outside any message count.
    ///
    /// - Throws: ``EvplError`` `.resourceExhausted` when the pool cannot hold them.
    package func queueWireBytes(copying bytes: UnsafeRawBufferPointer) throws(EvplError) {
        try sendQueue.append(copying: bytes, pool: loop.bufferPool, trackMessage: false)
    }

    /// Refuses, before anything is queued, `count` bytes the pool could
    /// not hold in the send queue.
    ///
    /// - Throws: ``EvplError`` `.resourceExhausted`.
    package func checkWireRoom(for count: Int) throws(EvplError) {
        try sendQueue.checkRoom(for: count, in: loop.bufferPool)
    }
}
