import CEvplLinux
#if canImport(Glibc)
import Glibc
#endif

/// A bound UDP socket on one loop: sends datagrams to any address and
/// receives datagrams together with their sender's address. No handshake and
/// no connected/disconnected events; each datagram is delivered whole.
///
/// Sends are queued and written at the end of the iteration with one
/// `sendmmsg` per batch of up to 64 datagrams.
public final class DatagramEndpoint: PollSource {
    /// Receives each datagram and its sender. The view is valid only during the call.
    public typealias Handler = (DatagramEndpoint, ReceivedBytes, SocketAddress) -> Void

    /// The loop the endpoint lives on.
    public unowned let loop: EventLoop
    /// The bound local address (with the real port when port 0 was asked for).
    public let localAddress: SocketAddress
    /// Receives every datagram.
    public var handler: Handler
    /// Arbitrary per-endpoint state for the application.
    public var context: AnyObject?

    let fd: Int32
    var token: UInt64 = 0
    var flushQueued = false
    private(set) var isClosed = false
    /// A datagram is being handled: its view must stay valid even if the
    /// handler closes the endpoint.
    private var delivering = false
    let receiveQueue: ReceiveQueue
    /// How datagrams meet the kernel: the backend (see ``DatagramTransport``).
    var transport: DatagramTransport
    /// Datagrams queued for the next flush, with their destinations.
    var outgoing: [(data: IOVec, address: SocketAddress)] = []
    /// Pool buffers this endpoint waits for before it receives again; 0
    /// while it is not waiting.
    var buffersAwaited = 0

    init(loop: EventLoop, fd: Int32, localAddress: SocketAddress, handler: @escaping Handler) {
        self.loop = loop
        self.fd = fd
        self.localAddress = localAddress
        self.handler = handler
        self.receiveQueue = ReceiveQueue(pool: loop.bufferPool)
        self.transport = .socket(SocketDatagram())
    }

    /// Datagrams dropped on receipt because they were larger than a pool
    /// buffer (raise `bufferSize` to receive them).
    public private(set) var truncatedDatagrams = 0
    /// Datagrams the kernel refused to send (no route, unreachable, too
    /// large, not permitted) and that were dropped, as UDP would. Datagrams
    /// still queued when the endpoint closes are not counted.
    public private(set) var rejectedSends = 0

    /// The largest datagram IPv4 or IPv6 UDP can carry.
    static let largestDatagram = 65_535

    /// Datagrams queued and not yet handed to the kernel (on io_uring: not
    /// yet completed).
    public var queuedDatagrams: Int { outgoing.count + transport.sendsInFlight }

    /// Queues a copy of `bytes` as one datagram to `address`.
    ///
    /// - Throws: ``EvplError`` `.invalidArgument` for a datagram larger than a
    ///   pool buffer, `.invalidAddress` for a non-IP address, `.invalidState`
    ///   after ``close()``.
    public func send(to address: SocketAddress, copying bytes: UnsafeRawBufferPointer) throws(EvplError) {
        loop.checkLoopThread()
        guard !isClosed else { throw EvplError(.invalidState, operation: "send datagram", context: "endpoint closed") }
        guard !address.isUnix else { throw EvplError(.invalidAddress, operation: "send datagram", context: "\(address) is not an IP address") }
        guard bytes.count <= loop.bufferPool.bufferSize else {
            throw EvplError(.invalidArgument, operation: "send datagram", context: "\(bytes.count) bytes exceeds buffer size \(loop.bufferPool.bufferSize)")
        }
        var iovec = try loop.bufferPool.allocate()
        if bytes.count > 0 { iovec.baseAddress.copyMemory(from: bytes.baseAddress!, byteCount: bytes.count) }
        iovec.length = bytes.count
        outgoing.append((iovec, address))
        if !flushQueued {
            flushQueued = true
            loop.pendingDatagramFlush.append(self)
        }
    }

    /// Queues a copy of `bytes` as one datagram to `address`.
    public func send(to address: SocketAddress, _ bytes: [UInt8]) throws(EvplError) {
        let result = bytes.withUnsafeBytes { raw in
            Result { () throws(EvplError) in try send(to: address, copying: raw) }
        }
        try result.get()
    }

    /// Closes the socket and drops unsent datagrams. Closing twice is harmless.
    public func close() {
        guard !isClosed else { return }
        isClosed = true
        switch transport {
        case .socket: loop.unregister(token: token)
        case .ioUring(let datagrams): datagrams.cancel()
        }
        SystemCalls.close(fd)
        for (data, _) in outgoing { data.release() }
        outgoing.removeAll()
        // A handler closing from inside its callback still reads its view;
        // the delivery releases the queue when the handler returns.
        if !delivering { receiveQueue.releaseAll() }
        if case .socket(let socket) = transport { socket.releaseSpare() }
        if buffersAwaited > 0 {
            buffersAwaited = 0
            loop.datagramMemoryWaiters.removeAll { $0 === self }
        }
    }

    func flush() {
        switch transport {
        case .socket(let socket):
            socket.flush(self)
        case .ioUring(let datagrams):
            for index in outgoing.indices { datagrams.send(outgoing[index].data, to: outgoing[index].address) }
            outgoing.removeAllKeepingCapacity()
        }
    }

    /// Receives again after waiting for pool buffers: what waits in the
    /// kernel announces itself with no new readiness edge.
    func receiveAgain() {
        switch transport {
        case .socket(let socket): socket.handleReadiness(UInt32(EPOLLIN.rawValue), of: self)
        case .ioUring(let datagrams): datagrams.armReceive()
        }
    }

    /// Counts a datagram dropped because it did not fit.
    func noteTruncated() {
        truncatedDatagrams += 1
    }

    /// Counts a datagram the kernel refused to send.
    func noteRejectedSend() {
        rejectedSends += 1
    }

    /// Hands the `length` bytes at the head of the receive queue to the
    /// handler as one datagram from `sender`.
    func deliverQueued(length: Int, from sender: SocketAddress) {
        delivering = true
        handler(self, receiveQueue.view(length: length), sender)
        delivering = false
        if isClosed {
            receiveQueue.releaseAll()
        } else {
            receiveQueue.consume(length)
        }
    }

    /// Readiness from the loop's epoll set, or a read pass the loop
    /// scheduled after a burst (socket backend).
    func handleEvents(_ events: UInt32) {
        if case .socket(let socket) = transport { socket.handleReadiness(events, of: self) }
    }
}

extension EventLoop {
    /// Binds a UDP endpoint to `address` (port 0 picks a free port).
    ///
    /// - Throws: ``EvplError`` `.addressInUse`, `.invalidAddress` for a Unix
    ///   address, `.unavailable` for a missing backend.
    public func bindDatagram(
        _ address: SocketAddress,
        protocol evplProtocol: EvplProtocol = .udp,
        _ handler: @escaping DatagramEndpoint.Handler
    ) throws(EvplError) -> DatagramEndpoint {
        checkLoopThread()
        guard evplProtocol.transport == .udp else {
            throw EvplError(.invalidArgument, operation: "bind datagram", context: "\(evplProtocol) is not a datagram protocol")
        }
        try evplProtocol.validate(address, operation: "bind datagram")
        try evplProtocol.validateSecurity(server: false, operation: "bind datagram")
        let backend = try evplProtocol.resolvedBackend()
        let uring = backend == .ioUring ? try ioURing() : nil
        let fd = try SocketOps.makeSocket(family: address.family, type: Int32(SOCK_DGRAM.rawValue), operation: "bind datagram", context: "\(address)")
        let status = SocketOps.bind(fd, to: address)
        guard status == 0 else {
            SystemCalls.close(fd)
            throw EvplError(errno: status, operation: "bind", context: "\(address)")
        }
        let endpoint = DatagramEndpoint(loop: self, fd: fd, localAddress: SocketOps.localAddress(of: fd) ?? address, handler: handler)
        if let uring {
            SocketOps.setBlocking(fd)
            let datagrams = URingDatagram(endpoint: endpoint, uring: uring, bufferSize: bufferPool.bufferSize)
            endpoint.transport = .ioUring(datagrams)
            uringDatagrams.removeAll { $0.datagram == nil }
            uringDatagrams.append(WeakURingDatagram(datagram: datagrams))
            endpoint.token = UInt64.max
            datagrams.armReceive()
            return endpoint
        }
        do throws(EvplError) {
            endpoint.token = try register(fd: fd, events: UInt32(EPOLLIN.rawValue | EPOLLOUT.rawValue | EPOLLET.rawValue), source: endpoint)
        } catch {
            SystemCalls.close(fd)
            throw error
        }
        return endpoint
    }
}
