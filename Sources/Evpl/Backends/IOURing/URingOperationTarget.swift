import CURing

/// An object with io_uring operations in flight; it receives their
/// completions on its loop.
///
/// Each submitted operation carries the target's address in its user data,
/// with the operation kind in the low four bits (heap objects are 16-byte
/// aligned), and holds one strong reference to the target until its final
/// completion (the first one without `IORING_CQE_F_MORE`). A target therefore
/// outlives every operation it started, and dispatch costs no lookup.
class URingOperationTarget {
    /// Handles one completion of `operation`. `buffer` is the provided
    /// buffer the kernel filled, if any, with the ring's reference now the
    /// handler's to keep or release.
    func complete(_ operation: UInt8, result: Int32, flags: UInt32, buffer: Buffer?) {
        buffer?.release()
    }

    /// Called instead of ``complete(_:result:flags:buffer:)`` for an
    /// operation whose ring goes away before it completes: lets go of what
    /// the operation kept alive (nothing else may run for a loop that is
    /// going away). The ring drops the operation's reference right after.
    func abandon(_ operation: UInt8) {}

    /// The user data for a new `operation` on this target; retains the target
    /// until the operation's final completion.
    final func userData(for operation: UInt8) -> UInt64 {
        let address = UInt(bitPattern: Unmanaged.passRetained(self).toOpaque())
        return UInt64(address) | UInt64(operation & 0xF)
    }

    /// Lets the target of an operation whose ring goes away drop what the
    /// operation kept alive (see ``abandon(_:)``), and drops the operation's
    /// reference on it.
    static func abandon(userData: UInt64) {
        guard let pointer = UnsafeRawPointer(bitPattern: UInt(userData & ~0xF)) else { return }
        let target = Unmanaged<URingOperationTarget>.fromOpaque(pointer)
        target.takeUnretainedValue().abandon(UInt8(userData & 0xF))
        target.release()
    }

    /// Routes one completion to its target, dropping the operation's
    /// reference when it is the final one.
    static func dispatch(_ completion: io_uring_cqe, buffer: Buffer?) {
        let address = UInt(completion.user_data & ~0xF)
        guard let pointer = UnsafeRawPointer(bitPattern: address) else {
            buffer?.release()
            return
        }
        let target = Unmanaged<URingOperationTarget>.fromOpaque(pointer)
        target.takeUnretainedValue().complete(UInt8(completion.user_data & 0xF), result: completion.res, flags: completion.flags, buffer: buffer)
        if completion.flags & IORING_CQE_F_MORE == 0 {
            target.release()
        }
    }
}
