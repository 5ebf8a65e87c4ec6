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
    /// The io_uring operations of an endpoint on the io_uring backend; `nil`
    /// on the socket backend.
    var uring: URingDatagram?
    private var outgoing: [(data: IOVec, address: SocketAddress)] = []
    private let batch = 64
    private let headers: UnsafeMutablePointer<msghdr>
    private let vectors: UnsafeMutablePointer<iovec>
    private let addresses: UnsafeMutablePointer<sockaddr_storage>
    /// Sources and lengths of the (up to) two datagrams one receive returns.
    private let senders: UnsafeMutablePointer<sockaddr_storage>
    private let senderLengths: UnsafeMutablePointer<socklen_t>
    private let receivedLengths: UnsafeMutablePointer<Int>
    /// The second receive slot (socket backend): a pool buffer held ready so
    /// that one `recvmmsg` asks for two datagrams; getting one back means the
    /// socket is drained, which saves the read that would return `EAGAIN`.
    private var spare: Buffer?
    /// Pool buffers this endpoint waits for before it receives again; 0
    /// while it is not waiting.
    var buffersAwaited = 0

    init(loop: EventLoop, fd: Int32, localAddress: SocketAddress, handler: @escaping Handler) {
        self.loop = loop
        self.fd = fd
        self.localAddress = localAddress
        self.handler = handler
        self.receiveQueue = ReceiveQueue(pool: loop.bufferPool)
        headers = .allocate(capacity: batch)
        vectors = .allocate(capacity: batch)
        addresses = .allocate(capacity: batch)
        senders = .allocate(capacity: 2)
        senderLengths = .allocate(capacity: 2)
        receivedLengths = .allocate(capacity: 2)
    }

    deinit {
        headers.deallocate()
        vectors.deallocate()
        addresses.deallocate()
        senders.deallocate()
        senderLengths.deallocate()
        receivedLengths.deallocate()
    }

    /// Datagrams dropped on receipt because they were larger than a pool
    /// buffer (raise `bufferSize` to receive them).
    public private(set) var truncatedDatagrams = 0
    /// Datagrams the kernel refused to send (no route, unreachable, too
    /// large, not permitted) and that were dropped, as UDP would. Datagrams
    /// still queued when the endpoint closes are not counted.
    public private(set) var rejectedSends = 0

    /// The largest datagram IPv4 or IPv6 UDP can carry.
    private static let largestDatagram = 65_535

    /// Datagrams queued and not yet handed to the kernel (on io_uring: not
    /// yet completed).
    public var queuedDatagrams: Int { outgoing.count + (uring?.sendsInFlight ?? 0) }

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
        if let uring {
            uring.cancel()
        } else {
            loop.unregister(token: token)
        }
        Glibc.close(fd)
        for (data, _) in outgoing { data.release() }
        outgoing.removeAll()
        // A handler closing from inside its callback still reads its view;
        // the delivery releases the queue when the handler returns.
        if !delivering { receiveQueue.releaseAll() }
        spare?.release()
        spare = nil
        if buffersAwaited > 0 {
            buffersAwaited = 0
            loop.datagramMemoryWaiters.removeAll { $0 === self }
        }
    }

    func flush() {
        if let uring {
            for index in outgoing.indices { uring.send(outgoing[index].data, to: outgoing[index].address) }
            outgoing.removeAllKeepingCapacity()
            return
        }
        var sent = 0
        while sent < outgoing.count && !isClosed {
            let count = min(batch, outgoing.count - sent)
            for index in 0..<count {
                let (data, address) = outgoing[sent + index]
                vectors[index] = iovec(iov_base: data.baseAddress, iov_len: data.length)
                let length = address.withSockAddr { raw, length in
                    UnsafeMutableRawPointer(addresses + index).copyMemory(from: raw, byteCount: Int(length))
                    return length
                }
                headers[index] = msghdr(msg_name: UnsafeMutableRawPointer(addresses + index), msg_namelen: length, msg_iov: vectors + index, msg_iovlen: 1, msg_control: nil, msg_controllen: 0, msg_flags: 0)
            }
            let result = SystemCalls.sendmmsg(fd, headers, count, Int32(MSG_DONTWAIT))
            if result < 0 {
                let code = Glibc.errno
                if code == EINTR { continue }
                if code == EAGAIN { break }
                // A datagram the kernel rejects (unreachable, too large) is dropped, as UDP would.
                noteRejectedSend()
                outgoing[sent].data.release()
                sent += 1
                continue
            }
            for index in 0..<Int(result) { outgoing[sent + index].data.release() }
            sent += Int(result)
        }
        if sent > 0 { outgoing.removeFirst(sent) }
    }

    /// Receives again after waiting for pool buffers: what waits in the
    /// kernel announces itself with no new readiness edge.
    func receiveAgain() {
        if let uring {
            uring.armReceive()
        } else {
            handleEvents(UInt32(EPOLLIN.rawValue))
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

    /// The source of the `index`th datagram of the last receive.
    private func sender(_ index: Int) -> SocketAddress {
        senders.advanced(by: index).withMemoryRebound(to: sockaddr.self, capacity: 1) {
            SocketAddress($0, length: senderLengths[index])
        } ?? SocketAddress(storage: .unixUnnamed)
    }

    func handleEvents(_ events: UInt32) {
        if events & UInt32(EPOLLOUT.rawValue) != 0 && !outgoing.isEmpty { flush() }
        guard events & UInt32(EPOLLIN.rawValue | EPOLLERR.rawValue) != 0 else { return }
        var reads = 0
        while !isClosed && reads < 64 {
            reads += 1
            let space: UnsafeMutableRawBufferPointer
            do {
                space = try receiveQueue.writableSpace(minimum: Self.largestDatagram)
                if spare == nil { spare = try loop.bufferPool.take() }
            } catch {
                // At the pool ceiling: what arrives waits in the kernel (or
                // is dropped there, and counted) until buffers come back.
                let bufferSize = loop.bufferPool.bufferSize
                loop.waitForMemory(self, buffers: (Self.largestDatagram + bufferSize - 1) / bufferSize + 1)
                return
            }
            let second = spare.unsafelyUnwrapped
            let received = SystemCalls.receiveTwo(fd, space.baseAddress, space.count, second.baseAddress, second.capacity,
                                          senders, senderLengths, receivedLengths)
            if received < 0 {
                if Glibc.errno == EINTR { continue }
                return  // EAGAIN, or an ICMP error reported on the socket: nothing to read
            }
            if receivedLengths[0] > space.count {
                noteTruncated()  // MSG_TRUNC reports the full length; never deliver a part
            } else {
                receiveQueue.commit(receivedLengths[0])
                deliverQueued(length: receivedLengths[0], from: sender(0))
            }
            guard received == 2 else { return }  // drained until the next edge
            if receivedLengths[1] > second.capacity {
                noteTruncated()
            } else if !isClosed {
                spare = nil  // the queue takes the buffer's reference
                receiveQueue.append(IOVec(buffer: second, offset: 0, length: receivedLengths[1]))
                deliverQueued(length: receivedLengths[1], from: sender(1))
            }
        }
        if !isClosed {
            // Burst limit reached: come back next iteration without waiting for an edge.
            loop.pendingReads.append(self)
        }
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
        try evplProtocol.validateTLS(role: .client, operation: "bind datagram")
        let backend = try evplProtocol.resolvedBackend()
        let uring = backend == .ioUring ? try ioURing() : nil
        let fd = try SocketOps.makeSocket(family: address.family, type: Int32(SOCK_DGRAM.rawValue), operation: "bind datagram", context: "\(address)")
        let status = SocketOps.bind(fd, to: address)
        guard status == 0 else {
            Glibc.close(fd)
            throw EvplError(errno: status, operation: "bind", context: "\(address)")
        }
        let endpoint = DatagramEndpoint(loop: self, fd: fd, localAddress: SocketOps.localAddress(of: fd) ?? address, handler: handler)
        if let uring {
            SocketOps.setBlocking(fd)
            let datagrams = URingDatagram(endpoint: endpoint, uring: uring, bufferSize: bufferPool.bufferSize)
            endpoint.uring = datagrams
            uringDatagrams.removeAll { $0.datagram == nil }
            uringDatagrams.append(WeakURingDatagram(datagram: datagrams))
            endpoint.token = UInt64.max
            datagrams.armReceive()
            return endpoint
        }
        do throws(EvplError) {
            endpoint.token = try register(fd: fd, events: UInt32(EPOLLIN.rawValue | EPOLLOUT.rawValue | EPOLLET.rawValue), source: endpoint)
        } catch {
            Glibc.close(fd)
            throw error
        }
        return endpoint
    }
}
