import Evpl

/// How an ``HTTPClient`` connects and what responses it accepts.
public struct HTTPClientConfiguration: Sendable {
    /// The transport, backend and TLS of every connection (TCP by default).
    public var evplProtocol: EvplProtocol
    /// Limits on each response: status line, fields, and the body, by
    /// `Content-Length` and chunks (and, for ``HTTPClient/execute(_:body:)``,
    /// which collects it, in all).
    public var limits: HTTPLimits
    /// The longest from a request's send to its response's head, and the
    /// longest a response body may go without a byte. `nil`: no limit.
    public var responseTimeout: Duration?
    /// Kept-alive connections held per host and port.
    public var idleConnectionsPerHost: Int

    /// A configuration with the given values.
    public init(evplProtocol: EvplProtocol = .tcp, limits: HTTPLimits = HTTPLimits(body: 64 << 20),
                responseTimeout: Duration? = .seconds(30), idleConnectionsPerHost: Int = 8) {
        self.evplProtocol = evplProtocol
        self.limits = limits
        self.responseTimeout = responseTimeout
        self.idleConnectionsPerHost = idleConnectionsPerHost
    }
}
