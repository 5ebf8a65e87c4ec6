/// How an HTTP server reads requests.
public struct HTTPServerConfiguration: Sendable, Hashable {
    /// Size limits on each request.
    public var limits: HTTPLimits
    /// The longest a request's head may take from its first byte to its
    /// empty line; past it the connection closes (a slowloris client, on a
    /// new connection or a kept one). `nil`: no limit. The connection's own
    /// handshake and idle timeouts apply besides.
    public var headTimeout: Duration?
    /// The longest a request's body may go without a byte arriving; past it
    /// the connection closes. `nil`: no limit.
    public var bodyTimeout: Duration?

    /// A configuration with the given limits and timeouts.
    public init(limits: HTTPLimits = .default, headTimeout: Duration? = .seconds(10), bodyTimeout: Duration? = .seconds(30)) {
        self.limits = limits
        self.headTimeout = headTimeout
        self.bodyTimeout = bodyTimeout
    }
}
