import CURing

#if EVPL_FAULT_INJECTION
extension URing {
    /// Applies the calling thread's fault plan to the entries queued since
    /// the last look, before they reach the kernel: an injected error turns
    /// the entry into a `NOP` whose completion reaches the operation's
    /// target as that error (nothing ran, nothing was consumed); a short
    /// count lowers the entry's byte count, so the kernel itself moves less.
    func applyFaultPlan() {
        let queue = ring.pointee.sq
        defer { faultScanPosition = queue.sqe_tail }
        guard let plan = FaultPlan.current else { return }
        var index = queue.sqe_head
        while index != queue.sqe_tail {
            let entry = queue.sqes + Int(index & queue.ring_mask)
            let seen = Int32(bitPattern: index &- faultScanPosition) < 0
            index &+= 1
            guard !seen, let call = SystemCall(uringOpcode: entry.pointee.opcode), let fault = plan.fault(for: call) else { continue }
            switch fault {
            case .error(let code):
                let injected = InjectedCompletion(userData: entry.pointee.user_data, result: -code)
                io_uring_prep_nop(entry)
                entry.pointee.user_data = injected.userData(for: 0)
            case .shortCount(let limit):
                Self.limit(entry, to: limit)
            }
        }
    }

    /// Lowers the bytes `entry` moves to at most `limit`.
    private static func limit(_ entry: UnsafeMutablePointer<io_uring_sqe>, to limit: Int) {
        switch UInt32(entry.pointee.opcode) {
        case IORING_OP_READV.rawValue, IORING_OP_WRITEV.rawValue:
            guard let vectors = UnsafeMutablePointer<iovec>(bitPattern: UInt(entry.pointee.addr)) else { return }
            entry.pointee.len = UInt32(limitVectors(vectors, count: Int(entry.pointee.len), to: limit))
        case IORING_OP_SENDMSG.rawValue, IORING_OP_SENDMSG_ZC.rawValue, IORING_OP_RECVMSG.rawValue:
            guard let message = UnsafeMutablePointer<msghdr>(bitPattern: UInt(entry.pointee.addr)), let vectors = message.pointee.msg_iov else { return }
            message.pointee.msg_iovlen = limitVectors(vectors, count: message.pointee.msg_iovlen, to: limit)
        default:
            // SEND, RECV (0 there means "the whole provided buffer"), and the fixed-buffer transfers.
            let length = entry.pointee.len == 0 ? Int.max : Int(entry.pointee.len)
            entry.pointee.len = UInt32(min(length, limit))
        }
    }

    /// Shortens `vectors` in place to describe at most `limit` bytes;
    /// returns how many remain in use (at least one).
    private static func limitVectors(_ vectors: UnsafeMutablePointer<iovec>, count: Int, to limit: Int) -> Int {
        var remaining = limit
        for index in 0..<count {
            vectors[index].iov_len = min(vectors[index].iov_len, remaining)
            remaining -= vectors[index].iov_len
            if remaining == 0 { return index + 1 }
        }
        return count
    }
}

extension SystemCall {
    /// The kind of io_uring operation an opcode is, for the ones a plan can fault.
    init?(uringOpcode: UInt8) {
        switch UInt32(uringOpcode) {
        case IORING_OP_RECV.rawValue, IORING_OP_RECVMSG.rawValue: self = .uringReceive
        case IORING_OP_SEND.rawValue, IORING_OP_SENDMSG.rawValue, IORING_OP_SEND_ZC.rawValue, IORING_OP_SENDMSG_ZC.rawValue: self = .uringSend
        case IORING_OP_READV.rawValue, IORING_OP_READ_FIXED.rawValue: self = .uringRead
        case IORING_OP_WRITEV.rawValue, IORING_OP_WRITE_FIXED.rawValue: self = .uringWrite
        case IORING_OP_FSYNC.rawValue: self = .uringSync
        default: return nil
        }
    }
}

/// The stand-in for an operation a fault plan failed: completes the
/// operation's own target with the injected error, as its final completion.
private final class InjectedCompletion: URingOperationTarget {
    private let userData: UInt64
    private let result: Int32

    init(userData: UInt64, result: Int32) {
        self.userData = userData
        self.result = result
    }

    override func complete(_ operation: UInt8, result _: Int32, flags: UInt32, received: IOVec?) {
        received?.release()
        var completion = io_uring_cqe()
        completion.user_data = userData
        completion.res = result
        URingOperationTarget.dispatch(completion, received: nil)
    }

    override func abandon(_ operation: UInt8) {
        URingOperationTarget.abandon(userData: userData)
    }
}
#else
extension URing {
    /// Release builds have no fault plans.
    @inline(__always) func applyFaultPlan() {}
}
#endif
