import CEvplLinux
#if canImport(Glibc)
import Glibc
#endif

extension EventLoop {
    /// Opens a stream connection to `address`.
    ///
    /// The connection is returned at once; `handler` later sees `connected`,
    /// or, when nothing listens there, exactly one `disconnected` carrying
    /// the error (never `connected`).
    ///
    /// - Throws: ``EvplError`` when the protocol is not a stream protocol, the
    ///   address does not suit it, the backend is unavailable, or no socket
    ///   can be created (for example `.tooManyOpenFiles`).
    public func connect(
        to address: SocketAddress,
        protocol evplProtocol: EvplProtocol = .tcp,
        segmenter: Segmenter? = nil,
        _ handler: @escaping Connection.Handler
    ) throws(EvplError) -> Connection {
        checkLoopThread()
        guard evplProtocol.isStream else {
            throw EvplError(.invalidArgument, operation: "connect", context: "\(evplProtocol) is not a stream protocol; use bindDatagram")
        }
        try evplProtocol.validate(address, operation: "connect")
        try evplProtocol.validateSecurity(server: false, operation: "connect")
        if evplProtocol.transport == .inproc {
            return try connectInProcess(to: address, protocol: evplProtocol, segmenter: segmenter, handler)
        }
        let backend = try evplProtocol.resolvedBackend()
        let uring = backend == .ioUring ? try ioURing() : nil
        let fd = try SocketOps.makeSocket(family: address.family, type: Int32(SOCK_STREAM.rawValue), operation: "connect", context: "\(address)")
        if evplProtocol.transport == .tcp {
            SocketOps.setOption(fd, Int32(IPPROTO_TCP), TCP_NODELAY, 1)
        }
        applySocketBuffers(fd)
        let connection = Connection(loop: self, fd: fd, protocol: evplProtocol, remoteAddress: address, state: .connecting, handler: handler)
        connection.segmenter = segmenter
        if let context = evplProtocol.security {
            do throws(EvplError) {
                connection.security = try context.makeSession(for: connection)
            } catch {
                SystemCalls.close(fd)
                throw error
            }
        }
        if let uring {
            // io_uring waits for the socket itself: it stays blocking.
            SocketOps.setBlocking(fd)
            let stream = URingStream(connection: connection, uring: uring)
            connection.transport = .ioUring(stream)
            connection.token = UInt64.max
            connections.insert(connection)
            stream.connect(to: address)
            return connection
        }
        let status = address.withSockAddr { SystemCalls.connect(fd, $0, $1) == 0 ? 0 : Glibc.errno }
        if status != 0 && status != EINPROGRESS {
            guard SocketOps.isConnectFailure(status) else {
                SystemCalls.close(fd)
                throw EvplError(errno: status, operation: "connect", context: "\(address)")
            }
            connections.insert(connection)
            connection.tearDownBeforeRegistration(error: EvplError(errno: status, operation: "connect", context: "\(address)"))
            return connection
        }
        do throws(EvplError) {
            connection.token = try register(fd: fd, events: Connection.pollEvents, source: connection)
        } catch {
            SystemCalls.close(fd)
            throw error
        }
        connections.insert(connection)
        return connection
    }

    /// Takes over a socket a listener accepted for an attachment on this loop:
    /// runs the attach callback, then delivers `connected`.
    func adoptAcceptedSocket(fd: Int32, peer acceptedPeer: SocketAddress?, listenerID: UInt64) {
        guard let attachment = attachments[listenerID] else {
            SystemCalls.close(fd)
            return
        }
        let listener = attachment.listener
        if refusesConnections {
            statistics.admissionRefusals &+= 1
            SocketOps.setAbortiveClose(fd)
            SystemCalls.close(fd)
            return
        }
        if listener.evplProtocol.transport == .tcp {
            SocketOps.setOption(fd, Int32(IPPROTO_TCP), TCP_NODELAY, 1)
        }
        applySocketBuffers(fd)
        // The address `accept` reported; a Unix peer that never bound has none.
        let peer = acceptedPeer ?? SocketOps.peerAddress(of: fd) ?? SocketAddress(storage: .unixUnnamed)
        let connection = Connection(loop: self, fd: fd, protocol: listener.evplProtocol, remoteAddress: peer, state: .connected) { _, _ in }
        do throws(EvplError) {
            if let context = listener.evplProtocol.security {
                connection.security = try context.makeSession(for: connection)
            }
            if listener.backend == .ioUring {
                SocketOps.setBlocking(fd)
                connection.transport = .ioUring(URingStream(connection: connection, uring: try ioURing()))
                connection.token = UInt64.max
            } else {
                connection.token = try register(fd: fd, events: Connection.pollEvents, source: connection)
            }
        } catch {
            if error.code == .resourceExhausted { statistics.admissionRefusals &+= 1 }
            SystemCalls.close(fd)
            return
        }
        admit(connection, from: attachment)
    }

    /// Registers an accepted connection, runs its listener's attach
    /// callback, and delivers `connected` (under TLS, once the handshake
    /// the client starts is done).
    func admit(_ connection: Connection, from attachment: ListenerAttachment) {
        connections.insert(connection)
        let timeouts = attachment.listener.timeouts
        if timeouts.isLimited { connection.timeouts = timeouts }
        attachment.acceptHandler(connection)
        guard connection.state != .closed else { return }
        if connection.security == nil { connection.handler(connection, .connected) }
        connection.startAccepted()
    }
}

extension EventLoop {
    /// Sets the configured socket buffer sizes, if any, on a stream socket.
    func applySocketBuffers(_ fd: Int32) {
        guard config.socketBufferBytes > 0 else { return }
        let bytes = Int32(config.socketBufferBytes)
        SocketOps.setOption(fd, SOL_SOCKET, SO_SNDBUF, bytes)
        SocketOps.setOption(fd, SOL_SOCKET, SO_RCVBUF, bytes)
    }
}

extension Connection {
    /// Fails a connect that the kernel refused synchronously: the socket never
    /// reached epoll, and `disconnected` still arrives asynchronously.
    func tearDownBeforeRegistration(error: EvplError) {
        token = UInt64.max
        tearDown(error: error)
    }
}
