import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// Where other loops give back the buffers of one loop's pool that they
/// showed through borrowed buffers (see ``BufferPool/borrow(_:from:)``).
///
/// A buffer's reference count is kept on its own loop's thread only, so a
/// loop that is done with another loop's bytes cannot release them itself:
/// it hands the buffer here, and the owning loop releases it on its next
/// pass. A sleeping owner is not woken for it: what it gets back can wait
/// until it has something else to do (a loop that waits for memory looks
/// every few milliseconds).
final class BufferReturns: Sendable {
    /// The buffers given back and not yet released, under a lock.
    private struct Returned: @unchecked Sendable {
        // @unchecked: the buffers are only touched again on their own loop.
        var buffers: [Buffer] = []
    }

    /// The memory of a pool that went while other loops still showed
    /// some of its buffers: kept until the last of them lets this go.
    private struct Kept: @unchecked Sendable {
        // @unchecked: nothing touches them again; they are only freed.
        var slabs: [UnsafeMutableRawBufferPointer] = []
        var buffers: [Buffer] = []
    }

    private let returned = Locked(Returned())
    private let kept = Locked(Kept())
    /// Set with every return, cleared when the owner takes them: the
    /// owner's one look per pass.
    private let pending = Atomic<Bool>(false)

    /// Gives one reference of `buffer` back to its loop; from any thread.
    func giveBack(_ buffer: Buffer) {
        returned.withLock { returned in
            returned.buffers.append(buffer)
            pending.store(true, ordering: .relaxed)
        }
    }

    /// Whether buffers wait to be taken back.
    var hasPending: Bool { pending.load(ordering: .relaxed) }

    deinit {
        for slab in kept.withLock({ $0.slabs }) { munmap(slab.baseAddress, slab.count) }
    }

    /// Takes over the slabs and buffers of the owning pool, which is going
    /// while other loops still show some of its bytes: channels and
    /// borrowed buffers hold this mailbox, so the memory lives until the
    /// last of them is gone.
    func keepAlive(slabs: [UnsafeMutableRawBufferPointer], buffers: [Buffer]) {
        kept.withLock { kept in
            kept.slabs = slabs
            kept.buffers = buffers
        }
    }

    /// Swaps the buffers given back into `buffers` (an empty array); on
    /// the owning loop.
    func take(into buffers: inout [Buffer]) {
        returned.withLock { returned in
            pending.store(false, ordering: .relaxed)
            swap(&returned.buffers, &buffers)
        }
    }
}
