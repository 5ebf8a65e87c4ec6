import CEvplLinux
import CURing
#if canImport(Glibc)
import Glibc
#endif

/// The io_uring side of a UDP endpoint: one `RECVMSG` in flight into
/// enough pool buffers for the largest datagram (so none is ever cut), and
/// one `SENDMSG` per queued datagram, all submitted with the iteration's
/// single `io_uring_enter`.
///
/// A received datagram reaches the handler as IOVecs over the buffers the
/// kernel filled, with no copy, and in arrival order (one receive at a time).
/// After the endpoint closes, late completions only give their buffers back.
final class URingDatagram: URingOperationTarget {
    private static let receiveOperation: UInt8 = 1
    /// The largest UDP payload plus headroom: every datagram fits.
    private static let largestDatagram = 65_535

    private unowned(unsafe) let endpoint: DatagramEndpoint
    private unowned(unsafe) let uring: URing
    private var keepAlive: DatagramEndpoint?
    @exclusivity(unchecked) private var operationsInFlight = 0
    @exclusivity(unchecked) private var receiveBuffers: [Buffer] = []
    private var receiveArmed = false
    private let message: UnsafeMutablePointer<msghdr>
    private let vectors: UnsafeMutablePointer<iovec>
    private let sender: UnsafeMutablePointer<sockaddr_storage>
    private let vectorCount: Int
    @exclusivity(unchecked) private var spareSends: [URingDatagramSend] = []
    /// Sends queued or in flight, not yet completed.
    private(set) var sendsInFlight = 0

    init(endpoint: DatagramEndpoint, uring: URing, bufferSize: Int) {
        self.endpoint = endpoint
        self.uring = uring
        vectorCount = (Self.largestDatagram + bufferSize - 1) / bufferSize
        message = .allocate(capacity: 1)
        message.initialize(to: msghdr())
        vectors = .allocate(capacity: vectorCount)
        sender = .allocate(capacity: 1)
        sender.initialize(to: sockaddr_storage())
    }

    deinit {
        releaseReceiveBuffers()
        message.deallocate()
        vectors.deallocate()
        sender.deallocate()
    }

    private func started() {
        if operationsInFlight == 0 { keepAlive = endpoint }
        operationsInFlight += 1
    }

    /// Drops the keep-alive with the last operation: this may free the
    /// endpoint, so callers touch nothing of it afterwards.
    fileprivate func ended() {
        operationsInFlight -= 1
        if operationsInFlight == 0 { keepAlive = nil }
    }

    override func abandon(_ operation: UInt8) {
        if operation == Self.receiveOperation, let pool = receiveBuffers.first?.pool {
            // The ring goes away with its loop, and the pool with it: the
            // receive's buffers go back now, not when something still holding
            // the endpoint lets go of it after the pool is gone.
            receiveArmed = false
            pool.buffersLentToKernel -= receiveBuffers.count
            releaseReceiveBuffers()
        }
        ended()
    }

    // MARK: Receive

    /// Arms the next receive unless one is in flight.
    func armReceive() {
        guard !receiveArmed, !endpoint.isClosed else { return }
        let pool = endpoint.loop.bufferPool
        let needed = vectorCount - receiveBuffers.count
        guard pool.availableBuffers >= needed else {
            // At the pool ceiling nothing would re-arm this receive: the
            // loop does once a whole receive's worth is free (taking part
            // of it now could starve the holders of the rest).
            endpoint.loop.waitForMemory(endpoint, buffers: needed)
            return
        }
        while receiveBuffers.count < vectorCount {
            guard let buffer = try? pool.take() else { return }
            receiveBuffers.append(buffer)
        }
        for index in receiveBuffers.indices {
            vectors[index] = iovec(iov_base: receiveBuffers[index].baseAddress, iov_len: receiveBuffers[index].capacity)
        }
        message.pointee = msghdr()
        message.pointee.msg_name = UnsafeMutableRawPointer(sender)
        message.pointee.msg_namelen = socklen_t(MemoryLayout<sockaddr_storage>.size)
        message.pointee.msg_iov = vectors
        message.pointee.msg_iovlen = vectorCount
        // Buffers an armed receive may fill count as lent to the kernel.
        endpoint.loop.bufferPool.buffersLentToKernel += receiveBuffers.count
        let entry = uring.submissionEntry()
        io_uring_prep_recvmsg(entry, endpoint.fd, message, 0)
        entry.pointee.user_data = userData(for: Self.receiveOperation)
        receiveArmed = true
        started()
    }

    override func complete(_ operation: UInt8, result: Int32, flags: UInt32, received: IOVec?) {
        received?.release()
        receiveArmed = false
        endpoint.loop.bufferPool.buffersLentToKernel -= receiveBuffers.count
        if endpoint.isClosed {
            releaseReceiveBuffers()
        } else {
            if result >= 0 {
                deliver(length: Int(result))
            } else if result != -ECANCELED {
                // An ICMP error reported on the socket: nothing was received.
            }
            armReceive()
        }
        ended()
    }

    private func deliver(length: Int) {
        if message.pointee.msg_flags & Int32(MSG_TRUNC) != 0 {
            endpoint.noteTruncated()
            return
        }
        let address = sender.withMemoryRebound(to: sockaddr.self, capacity: 1) {
            SocketAddress($0, length: message.pointee.msg_namelen)
        } ?? SocketAddress(storage: .unixUnnamed)
        var remaining = length
        var used = 0
        while remaining > 0 {
            let buffer = receiveBuffers[used]
            let piece = min(remaining, buffer.capacity)
            endpoint.receiveQueue.append(IOVec(buffer: buffer, offset: 0, length: piece))
            remaining -= piece
            used += 1
        }
        // The queue now holds the filled buffers' references; the rest stay for the next receive.
        receiveBuffers.removeFirst(used)
        endpoint.deliverQueued(length: length, from: address)
    }

    /// Gives back the buffers kept for the next receive, when none is armed
    /// (an armed one's come back when the ring abandons it).
    func releaseIdleReceiveBuffers() {
        guard !receiveArmed else { return }
        releaseReceiveBuffers()
    }

    private func releaseReceiveBuffers() {
        for buffer in receiveBuffers { buffer.release() }
        receiveBuffers.removeAll()
    }

    // MARK: Send

    /// Queues one `SENDMSG` for `data` to `address`, taking over its reference.
    func send(_ data: IOVec, to address: SocketAddress) {
        let send = spareSends.popLast() ?? URingDatagramSend()
        sendsInFlight += 1
        started()
        send.start(on: uring, fd: endpoint.fd, data: data, address: address, owner: self)
    }

    fileprivate func recycle(_ send: URingDatagramSend, rejected: Bool) {
        sendsInFlight -= 1
        if rejected { endpoint.noteRejectedSend() }
        spareSends.append(send)
        ended()
    }

    // MARK: Close

    /// Cancels everything in flight before the endpoint closes its socket.
    func cancel() {
        if operationsInFlight > 0 { uring.cancelOperations(on: endpoint.fd) }
        // An armed receive's buffers come back with its cancelled completion.
        if !receiveArmed { releaseReceiveBuffers() }
    }
}

/// One datagram send in flight: its message header, address and data.
final class URingDatagramSend: URingOperationTarget {
    private let message: UnsafeMutablePointer<msghdr>
    private let vector: UnsafeMutablePointer<iovec>
    private let address: UnsafeMutablePointer<sockaddr_storage>
    private var data: IOVec?
    private var owner: URingDatagram?

    override init() {
        message = .allocate(capacity: 1)
        vector = .allocate(capacity: 1)
        address = .allocate(capacity: 1)
        super.init()
    }

    deinit {
        message.deallocate()
        vector.deallocate()
        address.deallocate()
    }

    fileprivate func start(on uring: URing, fd: Int32, data: IOVec, address target: SocketAddress, owner: URingDatagram) {
        self.data = data
        self.owner = owner
        vector.pointee = iovec(iov_base: data.baseAddress, iov_len: data.length)
        let length = target.withSockAddr { raw, length in
            UnsafeMutableRawPointer(address).copyMemory(from: raw, byteCount: Int(length))
            return length
        }
        message.pointee = msghdr(msg_name: UnsafeMutableRawPointer(address), msg_namelen: length, msg_iov: vector, msg_iovlen: 1,
                                 msg_control: nil, msg_controllen: 0, msg_flags: 0)
        let entry = uring.submissionEntry()
        io_uring_prep_sendmsg(entry, fd, message, UInt32(CEVPL_MSG_NOSIGNAL))
        entry.pointee.user_data = userData(for: 2)
    }

    override func abandon(_ operation: UInt8) {
        complete(operation, result: -ECANCELED, flags: 0, received: nil)
    }

    override func complete(_ operation: UInt8, result: Int32, flags: UInt32, received: IOVec?) {
        received?.release()
        // A datagram the kernel rejects (unreachable, too large) is dropped, as UDP would.
        data?.release()
        data = nil
        let owner = self.owner
        self.owner = nil
        owner?.recycle(self, rejected: result < 0 && result != -ECANCELED)
    }
}

/// A weak reference to an endpoint's io_uring side, for its loop's teardown.
struct WeakURingDatagram {
    weak var datagram: URingDatagram?
}
