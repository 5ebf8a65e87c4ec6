/// What a ``Connection`` reports to its handler.
public enum ConnectionEvent {
    /// The connection is established. Delivered exactly once, before any data;
    /// never delivered for a connect that fails.
    case connected
    /// Data arrived: a whole message when the connection has a segmenter,
    /// otherwise the next bytes of the stream. The view is valid only during
    /// the callback.
    case received(ReceivedBytes)
    /// Bytes and whole sends written to the kernel since the last `sent`
    /// event. Only when ``Connection/notifiesSent`` is on.
    case sent(bytes: Int, messages: Int)
    /// The send queue fell below ``EvplConfig/sendLowWatermark``.
    case writable
    /// The peer finished sending: its end of stream arrived after every byte
    /// before it was delivered, and no `received` follows. Sends are still
    /// possible from this callback; then, unless
    /// ``Connection/finishesWhenInputCloses`` is off, the connection
    /// finishes: queued bytes go out, then its own end of stream, then
    /// `disconnected`.
    case inputClosed
    /// The connection is over: closed by either side, reset, refused or
    /// failed. Delivered exactly once, last; `nil` for an orderly close (both
    /// ends finished), `.aborted` after this side's ``Connection/close()``,
    /// `.connectionReset` when the peer reset it.
    case disconnected(EvplError?)
}

/// Where a stream message ends, as decided by a ``Segmenter``.
public enum SegmentDecision: Sendable, Hashable {
    /// The next message is this many bytes (including any header).
    case message(length: Int)
    /// The bytes so far do not yet say how long the message is.
    case needMoreBytes
    /// The stream is malformed; the connection is closed with this reason.
    case failure(String)
}

/// Splits a byte stream into messages: given the unconsumed bytes, says how
/// long the next message is. Called again after each delivered message.
public typealias Segmenter = (ReceivedBytes) -> SegmentDecision

/// Ready-made segmenters.
public enum Segmenters {
    /// Messages prefixed by a 4-byte big-endian length of the payload that
    /// follows; `maximumPayload` guards against absurd lengths.
    public static func lengthPrefixed32(maximumPayload: Int = 64 << 20) -> Segmenter {
        return { bytes in
            guard bytes.count >= 4 else { return .needMoreBytes }
            let payload = Int(bytes.loadBigEndianUInt32())
            guard payload <= maximumPayload else {
                return .failure("length \(payload) exceeds \(maximumPayload)")
            }
            return .message(length: 4 + payload)
        }
    }

    /// Messages that end with `delimiter`, which each message includes:
    /// lines ending in `"\r\n"`, records ending in a zero byte.
    ///
    /// A message longer than `maximumLength` (delimiter included) fails the
    /// stream: a peer that never sends the delimiter holds at most that
    /// many bytes. Each call searches the unconsumed bytes from their start,
    /// so the cost of a message grows with its length times the number of
    /// pieces it arrives in; keep `maximumLength` to what the protocol needs.
    public static func delimited(by delimiter: [UInt8], maximumLength: Int = 64 << 10) -> Segmenter {
        precondition(!delimiter.isEmpty, "an empty delimiter ends nothing")
        precondition(maximumLength >= delimiter.count, "the maximum length must hold the delimiter")
        return { bytes in
            if let length = bytes.lengthThrough(delimiter, within: maximumLength) {
                return .message(length: length)
            }
            if bytes.count >= maximumLength {
                return .failure("no delimiter in the first \(maximumLength) bytes")
            }
            return .needMoreBytes
        }
    }

    /// Fixed-size messages of `length` bytes.
    public static func fixedLength(_ length: Int) -> Segmenter {
        precondition(length > 0)
        return { _ in .message(length: length) }
    }
}
