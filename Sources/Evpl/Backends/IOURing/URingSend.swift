import CEvplLinux
import CURing
#if canImport(Glibc)
import Glibc
#endif

/// One send (`SEND`/`SENDMSG`, or their zero-copy forms) in flight for a stream, with the message
/// header and iovecs the kernel reads and an extra reference on every buffer
/// they point into.
///
/// A plain send lets its buffers go at its completion. A zero-copy send
/// first completes with the byte count (`IORING_CQE_F_MORE` set), then with
/// a notification (`IORING_CQE_F_NOTIF`) once the kernel no longer reads the
/// pages; only then are the buffers released. Objects are recycled through
/// their stream, so steady-state sends allocate nothing.
final class URingSend: URingOperationTarget {
    enum Kind: UInt8 {
        case plain = 3
        case zeroCopy = 4
    }

    /// At most this many iovecs per send; the rest waits for the next one.
    static let maxVectors = 64

    let message: UnsafeMutablePointer<msghdr>
    let vectors: UnsafeMutablePointer<iovec>
    @exclusivity(unchecked) var held: [Buffer] = []
    /// The stream, kept alive while the operation is in flight.
    var stream: URingStream?

    override init() {
        message = .allocate(capacity: 1)
        message.initialize(to: msghdr())
        vectors = .allocate(capacity: Self.maxVectors)
        held.reserveCapacity(Self.maxVectors)
        super.init()
    }

    deinit {
        message.deallocate()
        vectors.deallocate()
    }

    /// Queues a send of the first unsent bytes of `queue` on `fd`. Returns
    /// whether it is a zero-copy send.
    @discardableResult
    func start(on uring: URing, fd: Int32, queue: borrowing SendQueue, zeroCopyThreshold: Int, stream: URingStream) -> Bool {
        let (count, bytes) = queue.gather(into: vectors, limit: Self.maxVectors)
        queue.retainHead(count, into: &held)
        message.pointee.msg_iov = vectors
        message.pointee.msg_iovlen = count
        self.stream = stream
        let entry = uring.submissionEntry()
        let kind: Kind = bytes >= zeroCopyThreshold ? .zeroCopy : .plain
        let flags = CEVPL_MSG_NOSIGNAL
        switch (kind, count) {
        case (.zeroCopy, 1):
            io_uring_prep_send_zc(entry, fd, vectors[0].iov_base, vectors[0].iov_len, flags, 0)
        case (.zeroCopy, _):
            io_uring_prep_sendmsg_zc(entry, fd, message, UInt32(flags))
        case (.plain, 1):
            // One range: SEND spares the kernel importing a message header.
            io_uring_prep_send(entry, fd, vectors[0].iov_base, vectors[0].iov_len, flags)
        case (.plain, _):
            io_uring_prep_sendmsg(entry, fd, message, UInt32(flags))
        }
        entry.pointee.user_data = userData(for: kind.rawValue)
        return kind == .zeroCopy
    }

    override func abandon(_ operation: UInt8) {
        guard let stream else { return }
        end(on: stream)
    }

    override func complete(_ operation: UInt8, result: Int32, flags: UInt32, received: IOVec?) {
        received?.release()
        guard let stream else { return }
        if flags & IORING_CQE_F_NOTIF == 0 {
            stream.sendCompleted(result: result)
        }
        if flags & IORING_CQE_F_MORE == 0 { end(on: stream) }
    }

    /// After the last completion (or none, when abandoned): lets go of the
    /// sent bytes and goes back to `stream` for reuse.
    private func end(on stream: URingStream) {
        while let buffer = held.popLast() { buffer.release() }
        self.stream = nil
        stream.recycle(self)
    }
}
