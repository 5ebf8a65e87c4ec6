import CURing

/// An object with io_uring operations in flight; it receives their
/// completions on its loop.
///
/// Each submitted operation carries the target's address in its user data,
/// with the operation kind in the low four bits (heap objects are 16-byte
/// aligned), and holds one strong reference to the target until its final
/// completion (the first one without `IORING_CQE_F_MORE`). A target therefore
/// outlives every operation it started, and dispatch costs no lookup.
///
/// A target that something else keeps alive for as long as its operations
/// are in flight (a block request, owned by its device's slab) may start
/// them with ``unretainedUserData(for:)`` instead, and saves the two atomic
/// reference-count operations per operation. Its operation kinds then carry
/// ``unretained`` (kinds are below 8).
class URingOperationTarget {
    /// The bit of an operation kind that says its operation holds no
    /// reference on the target.
    static let unretained: UInt8 = 0x8

    /// Handles one completion of `operation`. `received` is what the kernel
    /// wrote into a provided buffer, if anything, with a reference that is
    /// now the handler's to keep or release.
    func complete(_ operation: UInt8, result: Int32, flags: UInt32, received: IOVec?) {
        received?.release()
    }

    /// Called instead of ``complete(_:result:flags:received:)`` for an
    /// operation whose ring goes away before it completes: lets go of what
    /// the operation kept alive (nothing else may run for a loop that is
    /// going away). The ring drops the operation's reference right after.
    func abandon(_ operation: UInt8) {}

    /// The user data for a new `operation` on this target; retains the target
    /// until the operation's final completion.
    final func userData(for operation: UInt8) -> UInt64 {
        let address = UInt(bitPattern: Unmanaged.passRetained(self).toOpaque())
        return UInt64(address) | UInt64(operation & 0x7)
    }

    /// The user data for a new `operation` on this target that holds no
    /// reference on it: the caller guarantees the target outlives the
    /// operation (until its final completion, or until the ring abandons it).
    @inline(__always)
    final func unretainedUserData(for operation: UInt8) -> UInt64 {
        let address = UInt(bitPattern: Unmanaged.passUnretained(self).toOpaque())
        return UInt64(address) | UInt64((operation & 0x7) | Self.unretained)
    }

    /// Lets the target of an operation whose ring goes away drop what the
    /// operation kept alive (see ``abandon(_:)``), and drops the operation's
    /// reference on it.
    static func abandon(userData: UInt64) {
        guard let pointer = UnsafeRawPointer(bitPattern: UInt(userData & ~0xF)) else { return }
        let target = Unmanaged<URingOperationTarget>.fromOpaque(pointer)
        let operation = UInt8(userData & 0xF)
        target.takeUnretainedValue().abandon(operation & 0x7)
        if operation & unretained == 0 { target.release() }
    }

    /// Routes one completion to its target, dropping the operation's
    /// reference when it is the final one.
    static func dispatch(_ completion: io_uring_cqe, received: IOVec?) {
        let address = UInt(completion.user_data & ~0xF)
        guard let pointer = UnsafeRawPointer(bitPattern: address) else {
            received?.release()
            return
        }
        let target = Unmanaged<URingOperationTarget>.fromOpaque(pointer)
        let operation = UInt8(truncatingIfNeeded: completion.user_data & 0xF)
        // An unretained target may be gone once it has handled its completion.
        target._withUnsafeGuaranteedRef {
            $0.complete(operation & 0x7, result: completion.res, flags: completion.flags, received: received)
        }
        if completion.flags & IORING_CQE_F_MORE == 0 && operation & unretained == 0 {
            target.release()
        }
    }
}
