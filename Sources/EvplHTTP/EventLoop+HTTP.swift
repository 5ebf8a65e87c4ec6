import Evpl

extension EventLoop {
    /// Serves HTTP on every connection `listener` hands this loop: each is
    /// set up with ``HTTPServerConnection/serve(_:configuration:handler:)``.
    public func serveHTTP(from listener: Listener, configuration: HTTPServerConfiguration = .init(), handler: @escaping HTTPServerHandler) {
        attach(to: listener) { connection in
            HTTPServerConnection.serve(connection, configuration: configuration, handler: handler)
        }
    }
}
