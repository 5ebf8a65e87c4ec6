/// Pull mode: the interface the async layer (``AsyncConnection``) consumes a
/// connection through, instead of its fields.
///
/// In pull mode received bytes are not handed to the handler: they wait in
/// the connection's receive queue, the consumer is told they came, and it
/// takes them when it is ready. Receiving pauses while a window's worth
/// waits untaken; the end of stream and the connection's end are states
/// the consumer reads. The callbacks API is push mode, the default.
extension Connection {
    /// Switches to pull mode: `arrived` is called (on the loop) whenever
    /// bytes or the end of stream come; receiving pauses once `window`
    /// bytes wait untaken. The handler stops receiving `received` and
    /// `inputClosed`, and the connection no longer finishes by itself at
    /// the peer's end.
    func startPulling(window: Int, arrived: @escaping () -> Void) {
        segmenter = nil
        finishesWhenInputCloses = false
        pullWindow = window
        pullConsumer = arrived
    }

    /// Back to push mode: what waits untaken is released, later bytes go
    /// to the handler (a no-op handler discards them), and receiving
    /// resumes if the window had paused it.
    func stopPulling() {
        pullConsumer = nil
        pullWindow = .max
        finishesWhenInputCloses = true
        receiveQueue.releaseAll()
        if isOpen { resumeReceiving(.consumer) }
    }

    /// Bytes received and not yet taken.
    var pendingPullBytes: Int { receiveQueue.count }

    /// A view of the first `length` bytes not yet taken; valid until they
    /// are taken with ``takePulled(_:window:)``.
    func pulledView(length: Int) -> ReceivedBytes {
        receiveQueue.view(length: length)
    }

    /// Takes the first `length` bytes (releasing their buffers), sets the
    /// window back to `window`, and resumes receiving once less than it
    /// waits.
    func takePulled(_ length: Int, window: Int) {
        if receiveQueue.count >= length { receiveQueue.consume(length) }
        pullWindow = window
        if receiveQueue.count < window && receivePauses.contains(.consumer) { resumeReceiving(.consumer) }
    }

    /// Lets at least `needed` bytes wait untaken (a message larger than
    /// the window must arrive whole), resuming receiving if the window had
    /// paused it below that.
    func widenPullWindow(to needed: Int) {
        if needed > pullWindow { pullWindow = needed }
        if receivePauses.contains(.consumer) && receiveQueue.count < pullWindow { resumeReceiving(.consumer) }
    }

    /// Releases every byte not yet taken.
    func discardPulled() {
        receiveQueue.releaseAll()
    }

    /// Whether no byte will come any more: the peer's end of stream was
    /// read, or the connection is over.
    var pullInputEnded: Bool { inputClosed || isClosed }

    /// The error that ended the connection, once it is over; `nil` while
    /// open or after an orderly end.
    var endError: EvplError? { isClosed ? finalError : nil }

    /// Ends the connection with `error` (a stream the consumer's segmenter
    /// rejected); what waits untaken is released.
    func failPulling(_ error: EvplError) {
        receiveQueue.releaseAll()
        tearDown(error: error)
    }
}
