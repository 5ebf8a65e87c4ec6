import Evpl

extension EvplProtocol {
    /// Creates a protocol choice that runs TLS over the stream: a server
    /// context for a listener, a client context for a connect. The
    /// application sees plaintext, as on any stream.
    public init(_ transport: Transport, backend: Backend = .auto, tls: TLSContext?) {
        self.init(transport, backend: backend)
        security = tls
    }

    /// TLS over the stream, when set: a server context for a listener, a
    /// client context for a connect.
    public var tls: TLSContext? {
        get { security as? TLSContext }
        set { security = newValue }
    }
}

extension TLSContext: StreamSecurityContext {
    package var isServer: Bool { role == .server }

    package func makeSession(for connection: Connection) throws(EvplError) -> any StreamSecurity {
        try TLSSession(connection: connection, context: self)
    }
}
