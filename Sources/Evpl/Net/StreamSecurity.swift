/// A layer between a connection's plaintext and its transport: the wire a
/// ``Connection`` speaks when it is not plain bytes (TLS, in the `EvplTLS`
/// module).
///
/// The connection keeps its two queues and its transport; the layer sits
/// between them. Ciphertext the transport received waits in ``ciphertext``
/// until ``received()`` turns it into plaintext in the connection's receive
/// queue; what the application sends goes through ``send(_:)`` and comes out
/// as records in the connection's send queue. A plain connection has no
/// layer, so the hot path pays one `nil` test for this seam.
package protocol StreamSecurity: AnyObject {
    /// Received bytes the layer has not consumed yet.
    var ciphertext: ReceiveQueue { get }
    /// Plaintext sent before the handshake completed, not yet encrypted.
    var pendingPlaintextCount: Int { get }
    /// The handshake completed and `connected` was reported.
    var isEstablished: Bool { get }
    /// The peer ended its stream in a way the layer vouches for (TLS's
    /// close_notify); an end of stream without it is a truncation.
    var closeNotifyReceived: Bool { get }
    /// Whether there is input left to process.
    var hasBufferedInput: Bool { get }

    /// Starts a client's handshake.
    func start()
    /// Processes what arrived in ``ciphertext``.
    func received()
    /// Refuses, before anything is encoded, a send of `count` bytes whose
    /// records the pool could not hold.
    func checkRoom(for count: Int) throws(EvplError)
    /// Encodes `bytes` into the connection's send queue, or keeps them for
    /// the end of the handshake.
    func send(_ bytes: UnsafeRawBufferPointer) throws(EvplError)
    /// Encodes what was sent during the handshake, as much as the pool
    /// has room for; the rest waits for the next call (after a write).
    func sendPending() throws(EvplError)
    /// Queues the layer's own end of stream (TLS's close_notify).
    func sendCloseNotify()
}

/// What an ``EvplProtocol`` carries to make a ``StreamSecurity`` for each
/// connection (a TLS context).
package protocol StreamSecurityContext: AnyObject, Sendable {
    /// Whether it makes the accepting end (`true`) or the dialling end.
    var isServer: Bool { get }
    /// The layer for one new connection, charged to its loop's budget.
    func makeSession(for connection: Connection) throws(EvplError) -> any StreamSecurity
}
