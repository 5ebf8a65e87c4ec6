/// How long a stream connection may take to start talking, and how long it
/// may stay silent: a peer that opens connections and says nothing, or
/// sends half a request and waits, is closed instead of holding a socket
/// and pool memory for good.
///
/// Set them on a ``Listener`` for every connection it accepts, or on a
/// ``Connection`` itself (``Connection/timeouts``). When one fires, the
/// connection ends with ``EvplError/Code/timedOut`` and the loop counts it
/// (``EventLoop/Statistics/handshakeTimeouts``,
/// ``EventLoop/Statistics/idleTimeouts``). All of a loop's deadlines share
/// one timer wheel, so a deadline costs no system timer and keeping a
/// connection alive costs one store per receive or send.
public struct ConnectionTimeouts: Sendable, Hashable {
    /// The longest time from accept (or from the start of a connect) to the
    /// end of the handshake: the TLS handshake if the stream has one, then
    /// the first message delivered to the handler, unless
    /// ``handshakeEndsWithFirstMessage`` is off and the application ends
    /// it with ``Connection/endHandshake()``. `nil`: no limit.
    public var handshake: Duration?
    /// The longest time without a byte received or written. `nil`: no limit.
    public var idle: Duration?
    /// Whether the first message delivered ends the handshake. Turn it off
    /// for a protocol whose own handshake spans several messages (or parses
    /// a header from raw bytes), and call ``Connection/endHandshake()``.
    public var handshakeEndsWithFirstMessage: Bool

    /// Timeouts with the given limits.
    public init(handshake: Duration? = nil, idle: Duration? = nil, handshakeEndsWithFirstMessage: Bool = true) {
        self.handshake = handshake
        self.idle = idle
        self.handshakeEndsWithFirstMessage = handshakeEndsWithFirstMessage
    }

    /// No limit at all: the library's default, as the socket API has none.
    public static let none = ConnectionTimeouts()

    /// What servers facing untrusted peers should start from: 10 s to
    /// finish the handshake, 60 s of silence at most. The `evpl` servers
    /// use these unless told otherwise.
    public static let server = ConnectionTimeouts(handshake: .seconds(10), idle: .seconds(60))

    /// Whether any limit is set.
    var isLimited: Bool { handshake != nil || idle != nil }
}
