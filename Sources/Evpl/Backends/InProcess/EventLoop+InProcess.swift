#if canImport(Glibc)
import Glibc
#endif

extension EventLoop {
    /// The most bytes this loop's in-process streams leave waiting for
    /// their peers: the configured socket buffer size, or 1 MiB, and never
    /// more than an eighth of the pool's ceiling. Bytes in a channel are
    /// this pool's buffers; a peer that needs buffers of the same pool to
    /// take them (a peer on this loop, decrypting TLS) must still find some.
    var inProcessWindow: Int {
        let configured = config.socketBufferBytes > 0 ? config.socketBufferBytes : 1 << 20
        return max(bufferPool.bufferSize, min(configured, bufferPool.maxBuffers / 8 * bufferPool.bufferSize))
    }

    /// Opens an in-process stream to the listener named by `address`: the
    /// connection is returned at once and sees `connected` on the next
    /// iteration, or one `disconnected` with `.connectionRefused` when no
    /// listener has the name (or its backlog is full).
    func connectInProcess(to address: SocketAddress, protocol evplProtocol: EvplProtocol, segmenter: Segmenter?,
                          _ handler: @escaping Connection.Handler) throws(EvplError) -> Connection {
        let connection = Connection(loop: self, fd: -1, protocol: evplProtocol, remoteAddress: address, state: .connecting, handler: handler)
        connection.segmenter = segmenter
        if let context = evplProtocol.security {
            connection.security = try context.makeSession(for: connection)
        }
        let channel = InProcessChannel()
        let client = InProcessStream(channel: channel, side: .client, localAddress: SocketAddress(storage: .inProcess("")))
        connection.transport = .inProcess(client)
        connection.token = UInt64.max
        client.bind(connection)
        connections.insert(connection)
        let server = InProcessStream(channel: channel, side: .server, localAddress: address)
        guard case .inProcess(let name) = address.storage, let acceptor = InProcessAcceptor.named(name), acceptor.offer(server) else {
            connection.tearDown(error: EvplError(errno: ECONNREFUSED, operation: "connect", context: "\(address)"))
            return connection
        }
        // Like a TCP handshake the kernel completes before any accept, the
        // connect completes on the next pass, whenever the listener's loop
        // takes the stream.
        connection.scheduleReadPass()
        return connection
    }

    /// Takes the server end of an in-process stream a listener handed to
    /// this loop: runs the attach callback, then delivers `connected`.
    func adoptInProcessStream(_ endpoint: InProcessStream, listenerID: UInt64) {
        guard let attachment = attachments[listenerID], !refusesConnections else {
            if attachments[listenerID] != nil { statistics.admissionRefusals &+= 1 }
            endpoint.refuse()
            return
        }
        let listener = attachment.listener
        let connection = Connection(loop: self, fd: -1, protocol: listener.evplProtocol, remoteAddress: SocketAddress(storage: .inProcess("")),
                                    state: .connected) { _, _ in }
        if let context = listener.evplProtocol.security {
            do throws(EvplError) {
                connection.security = try context.makeSession(for: connection)
            } catch {
                endpoint.refuse()
                return
            }
        }
        connection.transport = .inProcess(endpoint)
        connection.token = UInt64.max
        endpoint.bind(connection)
        admit(connection, from: attachment)
    }

    /// Releases the buffers of this loop's pool that other loops are done
    /// showing (see ``BufferReturns``).
    func takeBackReturnedBuffers() {
        bufferReturns.take(into: &returnedBuffers)
        for index in returnedBuffers.indices { returnedBuffers[index].release() }
        bufferPool.buffersLentToLoops -= returnedBuffers.count
        returnedBuffers.removeAllKeepingCapacity()
    }
}
