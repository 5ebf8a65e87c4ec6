import CEvplLinux
#if canImport(Glibc)
import Glibc
#endif

/// The socket backend's datagram path: one `recvmmsg` asks for two
/// datagrams on readiness (the second into a spare pool buffer: getting
/// one back means the socket is drained, which saves the read that would
/// return `EAGAIN`), and queued datagrams go out in `sendmmsg` batches of
/// 64. It holds the message headers those calls fill, allocated once.
final class SocketDatagram {
    /// Datagrams one `sendmmsg` carries at most.
    private static let batch = 64
    /// Receives one endpoint makes per readiness pass before the others get a turn.
    private static let readBurst = 64
    private let headers: UnsafeMutablePointer<msghdr>
    private let vectors: UnsafeMutablePointer<iovec>
    private let addresses: UnsafeMutablePointer<sockaddr_storage>
    /// Sources and lengths of the (up to) two datagrams one receive returns.
    private let senders: UnsafeMutablePointer<sockaddr_storage>
    private let senderLengths: UnsafeMutablePointer<socklen_t>
    private let receivedLengths: UnsafeMutablePointer<Int>
    /// The second receive slot: a pool buffer held ready for the next receive.
    private var spare: Buffer?

    init() {
        headers = .allocate(capacity: Self.batch)
        vectors = .allocate(capacity: Self.batch)
        addresses = .allocate(capacity: Self.batch)
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

    /// Gives back the spare receive buffer (the endpoint closes).
    func releaseSpare() {
        spare?.release()
        spare = nil
    }

    /// Sends what `endpoint` has queued, as much as the socket takes.
    func flush(_ endpoint: DatagramEndpoint) {
        var sent = 0
        while sent < endpoint.outgoing.count && !endpoint.isClosed {
            let count = min(Self.batch, endpoint.outgoing.count - sent)
            for index in 0..<count {
                let (data, address) = endpoint.outgoing[sent + index]
                vectors[index] = iovec(iov_base: data.baseAddress, iov_len: data.length)
                let length = address.withSockAddr { raw, length in
                    UnsafeMutableRawPointer(addresses + index).copyMemory(from: raw, byteCount: Int(length))
                    return length
                }
                headers[index] = msghdr(msg_name: UnsafeMutableRawPointer(addresses + index), msg_namelen: length, msg_iov: vectors + index, msg_iovlen: 1, msg_control: nil, msg_controllen: 0, msg_flags: 0)
            }
            let result = SystemCalls.sendmmsg(endpoint.fd, headers, count, Int32(MSG_DONTWAIT))
            if result < 0 {
                let code = Glibc.errno
                if code == EINTR { continue }
                if code == EAGAIN { break }
                // A datagram the kernel rejects (unreachable, too large) is dropped, as UDP would.
                endpoint.noteRejectedSend()
                endpoint.outgoing[sent].data.release()
                sent += 1
                continue
            }
            for index in 0..<Int(result) { endpoint.outgoing[sent + index].data.release() }
            sent += Int(result)
        }
        if sent > 0 { endpoint.outgoing.removeFirst(sent) }
    }

    /// Readiness of `endpoint`'s socket: room to send, datagrams to read.
    func handleReadiness(_ events: UInt32, of endpoint: DatagramEndpoint) {
        if events & UInt32(EPOLLOUT.rawValue) != 0 && !endpoint.outgoing.isEmpty { flush(endpoint) }
        guard events & UInt32(EPOLLIN.rawValue | EPOLLERR.rawValue) != 0 else { return }
        let loop = endpoint.loop
        var reads = 0
        while !endpoint.isClosed && reads < Self.readBurst {
            reads += 1
            let space: UnsafeMutableRawBufferPointer
            do {
                space = try endpoint.receiveQueue.writableSpace(minimum: DatagramEndpoint.largestDatagram)
                if spare == nil { spare = try loop.bufferPool.take() }
            } catch {
                // At the pool ceiling: what arrives waits in the kernel (or
                // is dropped there, and counted) until buffers come back.
                let bufferSize = loop.bufferPool.bufferSize
                loop.waitForMemory(endpoint, buffers: (DatagramEndpoint.largestDatagram + bufferSize - 1) / bufferSize + 1)
                return
            }
            let second = spare.unsafelyUnwrapped
            let received = SystemCalls.receiveTwo(endpoint.fd, space.baseAddress, space.count, second.baseAddress, second.capacity,
                                                  senders, senderLengths, receivedLengths)
            if received < 0 {
                if Glibc.errno == EINTR { continue }
                return  // EAGAIN, or an ICMP error reported on the socket: nothing to read
            }
            if receivedLengths[0] > space.count {
                endpoint.noteTruncated()  // MSG_TRUNC reports the full length; never deliver a part
            } else {
                endpoint.receiveQueue.commit(receivedLengths[0])
                endpoint.deliverQueued(length: receivedLengths[0], from: sender(0))
            }
            guard received == 2 else { return }  // drained until the next edge
            if receivedLengths[1] > second.capacity {
                endpoint.noteTruncated()
            } else if !endpoint.isClosed {
                spare = nil  // the queue takes the buffer's reference
                endpoint.receiveQueue.append(IOVec(buffer: second, offset: 0, length: receivedLengths[1]))
                endpoint.deliverQueued(length: receivedLengths[1], from: sender(1))
            }
        }
        if !endpoint.isClosed {
            // Burst limit reached: come back next iteration without waiting for an edge.
            loop.pendingReads.append(endpoint)
        }
    }

    /// The source of the `index`th datagram of the last receive.
    private func sender(_ index: Int) -> SocketAddress {
        senders.advanced(by: index).withMemoryRebound(to: sockaddr.self, capacity: 1) {
            SocketAddress($0, length: senderLengths[index])
        } ?? SocketAddress(storage: .unixUnnamed)
    }
}
