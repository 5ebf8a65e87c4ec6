import CEvplLinux
import CURing
#if canImport(Glibc)
import Glibc
#endif

/// The io_uring side of one stream connection: connect, a multishot receive
/// into the loop's provided buffers, and one send in flight at a time.
///
/// Received data reaches the connection as IOVecs over the buffers the
/// kernel filled, with no copy. While any operation is in flight the stream
/// keeps its connection alive, and after the connection closes, late
/// completions only give their buffers back: nothing reaches the user after
/// `disconnected`.
final class URingStream: URingOperationTarget {
    enum Operation: UInt8 {
        case connect = 1
        case receive = 2
        case poll = 3
    }

    private unowned(unsafe) let connection: Connection
    private unowned(unsafe) let uring: URing
    private var keepAlive: Connection?
    @exclusivity(unchecked) private var operationsInFlight = 0
    private var receiveArmed = false
    /// The user data of the armed multishot receive, to cancel it by.
    private var receiveUserData: UInt64 = 0
    private var receiveCancelRequested = false
    /// `POLLRDHUP`, which Glibc declares only under `_GNU_SOURCE`.
    private static let pollPeerHangUp: Int32 = 0x2000
    /// A one-shot poll waits for input that no ring buffer can take.
    private var pollArmed = false
    private(set) var sendInFlight = false
    @exclusivity(unchecked) private var spareSends: [URingSend] = []
    /// Sends of at least this many bytes go zero-copy; decided on first use.
    private var zeroCopyThreshold: Int?
    private var address = sockaddr_storage()

    init(connection: Connection, uring: URing) {
        self.connection = connection
        self.uring = uring
    }

    private func started() {
        if operationsInFlight == 0 { keepAlive = connection }
        operationsInFlight += 1
    }

    /// Drops the keep-alive with the last operation: this may free the
    /// connection, so callers touch nothing of it afterwards.
    private func ended() {
        operationsInFlight -= 1
        if operationsInFlight == 0 { keepAlive = nil }
    }

    override func abandon(_ operation: UInt8) {
        ended()
    }

    // MARK: Connect

    func connect(to remote: SocketAddress) {
        let length = remote.withSockAddr { raw, length in
            withUnsafeMutableBytes(of: &address) { $0.baseAddress!.copyMemory(from: raw, byteCount: Int(length)) }
            return length
        }
        let entry = uring.submissionEntry()
        withUnsafeMutablePointer(to: &address) { storage in
            storage.withMemoryRebound(to: sockaddr.self, capacity: 1) { io_uring_prep_connect(entry, connection.fd, $0, length) }
        }
        entry.pointee.user_data = userData(for: Operation.connect.rawValue)
        started()
        // Start dialling now, as a socket-backend connect does, rather than
        // at the end of the iteration.
        uring.submit()
    }

    // MARK: Receive

    /// Arms the multishot receive unless it is armed already, or the
    /// connection may not receive (paused, or the peer finished). While
    /// the provided-buffer ring is empty it waits with a poll instead.
    func armReceive() {
        guard !receiveArmed, !pollArmed, connection.mayReceive else { return }
        uring.buffers.activate()
        if uring.buffers.isEmpty {
            pollForInput()
            return
        }
        let entry = uring.submissionEntry()
        io_uring_prep_recv_multishot(entry, connection.fd, nil, 0, 0)
        entry.pointee.flags |= UInt8(CEVPL_IOSQE_BUFFER_SELECT)
        entry.pointee.buf_group = uring.buffers.group
        receiveUserData = userData(for: Operation.receive.rawValue)
        entry.pointee.user_data = receiveUserData
        receiveArmed = true
        receiveCancelRequested = false
        started()
    }

    /// Waits for input, or the peer's end, without a ring buffer: a
    /// one-shot poll, after which the data is read with `recv` into room
    /// the connection already holds (``readWithoutRing()``).
    private func pollForInput() {
        let entry = uring.submissionEntry()
        io_uring_prep_poll_add(entry, connection.fd, UInt32(POLLIN | Self.pollPeerHangUp))
        entry.pointee.user_data = userData(for: Operation.poll.rawValue)
        pollArmed = true
        started()
    }

    /// Reads what waits in the socket as the socket backend does, into the
    /// rest of the last buffer received or a new pool buffer: the ring had
    /// none to give, and a receive armed now would only fail again. Past
    /// the pool's ceiling the connection waits for memory; a connection
    /// that holds part of a message still reads its peer's end of stream
    /// and frees what it holds, so the loop cannot stall with every buffer
    /// held by connections whose peers have gone.
    private func readWithoutRing() {
        connection.wireReceiveQueue.reuseTailRoom()
        connection.readAvailable(drain: true)
        armReceive()
    }

    /// Cancels the multishot receive for a pause, so that data waits in the
    /// socket. Completions already produced still arrive and wait in the
    /// connection's receive queue; the receive is armed again on resume.
    func stopReceiving() {
        // A poll armed meanwhile completes at the next input and reads nothing while paused.
        guard receiveArmed, !receiveCancelRequested else { return }
        receiveCancelRequested = true
        let entry = uring.submissionEntry()
        io_uring_prep_cancel64(entry, receiveUserData, 0)
        entry.pointee.user_data = 0
        entry.pointee.flags |= UInt8(CEVPL_IOSQE_CQE_SKIP_SUCCESS)
        // Now, not with the iteration's submit: until the kernel sees the
        // cancel, every reap lets it fill more ring buffers for this socket.
        uring.submitNow()
    }

    override func complete(_ operation: UInt8, result: Int32, flags: UInt32, received: IOVec?) {
        switch Operation(rawValue: operation) {
        case .connect:
            received?.release()
            connection.connectCompleted(errno: result < 0 ? -result : 0)
            ended()
        case .receive:
            if flags & IORING_CQE_F_MORE == 0 { receiveArmed = false }
            receiveCompleted(result: result, bytes: received)
            if flags & IORING_CQE_F_MORE == 0 { ended() }
        case .poll:
            received?.release()
            pollArmed = false
            if connection.isOpen {
                if result < 0 && result != -ECANCELED && result != -EINTR {
                    connection.tearDown(error: EvplError(errno: -result, operation: "receive", context: "\(connection.remoteAddress)"))
                } else if result > 0 {
                    if Int32(result) & (Self.pollPeerHangUp | Int32(POLLHUP | POLLERR)) != 0 { connection.peerHungUp = true }
                    readWithoutRing()
                } else {
                    armReceive()
                }
            }
            ended()
        case nil:
            received?.release()
        }
    }

    private func receiveCompleted(result: Int32, bytes: IOVec?) {
        guard connection.isOpen else {
            bytes?.release()
            return
        }
        if result > 0, let bytes {
            connection.noteActivity()
            connection.wireReceiveQueue.append(bytes)
            connection.wireReceived()
            armReceive()
            return
        }
        bytes?.release()
        if result == 0 {
            connection.peerFinished()
        } else if result == -ENOBUFS {
            // The ring ran dry: the data waits in the socket. Re-arm; the
            // submission goes in after this batch has refilled the ring,
            // unless the pool is at its receive limit: then wait for room.
            connection.loop.statistics.receiveBufferShortages &+= 1
            uring.buffers.refill()
            if uring.buffers.isEmpty {
                readWithoutRing()
            } else {
                armReceive()
            }
        } else if result == -ECANCELED || result == -EINTR || result == -EAGAIN {
            // Cancelled for a pause (armed again if the resume came first),
            // or interrupted: nothing was received, so arm again.
            armReceive()
        } else {
            connection.tearDown(error: EvplError(errno: -result, operation: "receive", context: "\(connection.remoteAddress)"))
        }
    }

    // MARK: Send

    /// Starts a send of the queued bytes unless one is in flight.
    func flush() {
        guard !sendInFlight, !connection.sendQueue.isEmpty else { return }
        let send = spareSends.popLast() ?? URingSend()
        sendInFlight = true
        started()
        if zeroCopyThreshold == nil {
            // Zero-copy sends exist for TCP only, and the kernel copies what
            // it delivers to a local socket anyway: there they would only add
            // a notification per send.
            let config = connection.loop.config
            let useful = connection.evplProtocol.transport == .tcp && (config.zeroCopyToLoopback || !connection.remoteAddress.isLoopback)
            zeroCopyThreshold = useful ? config.zeroCopySendThreshold : Int.max
        }
        let threshold = zeroCopyThreshold.unsafelyUnwrapped
        if send.start(on: uring, fd: connection.fd, queue: connection.sendQueue, zeroCopyThreshold: threshold, stream: self) {
            connection.loop.statistics.zeroCopySends &+= 1
        }
    }

    func sendCompleted(result: Int32) {
        sendInFlight = false
        if connection.isOpen {
            if result >= 0 {
                connection.wrote(Int(result))
                flush()
            } else if result != -EINTR && result != -EAGAIN {
                connection.tearDown(error: EvplError(errno: -result, operation: "send", context: "\(connection.remoteAddress)"))
            } else {
                flush()
            }
        }
    }

    /// Takes back a send whose last completion arrived.
    func recycle(_ send: URingSend) {
        spareSends.append(send)
        ended()
    }

    // MARK: Close

    /// Cancels every operation in flight before the connection closes its
    /// socket; their late completions only return buffers.
    func cancel() {
        if operationsInFlight > 0 { uring.cancelOperations(on: connection.fd) }
    }
}
