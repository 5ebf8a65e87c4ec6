/// How an HTTP server reads requests.
public struct HTTPServerConfiguration: Sendable, Hashable {
    /// Size limits on each request.
    public var limits: HTTPLimits

    /// A configuration with the given limits.
    public init(limits: HTTPLimits = .default) {
        self.limits = limits
    }
}
