/// One fixed-size buffer carved from a pool slab, with a manual reference
/// count.
///
/// Buffers are created once, when their slab is mapped, and live as long as
/// the pool: taking one from the pool or returning it allocates nothing.
/// References are counted explicitly through ``IOVec/retain()`` and
/// ``IOVec/release()``; the last release returns the buffer to its pool.
/// A buffer belongs to the loop whose pool made it and must stay on that
/// loop's thread. Another loop reaches its bytes through a *borrowed*
/// buffer of its own pool (see <doc:ProtocolsAndBackends>): the counts of
/// the two are kept on their own threads, and the last reference to the
/// borrowed one sends the original's back.
public final class Buffer {
    /// Start of the buffer's memory inside its slab (for a borrowed
    /// buffer, inside the lending pool's slab).
    @exclusivity(unchecked) public private(set) var baseAddress: UnsafeMutableRawPointer
    /// Size of the buffer in bytes.
    @exclusivity(unchecked) public private(set) var capacity: Int
    /// Index of the slab the memory comes from, for backends that
    /// registered it (`Int.max` for a borrowed buffer: no slab of this pool).
    @exclusivity(unchecked) public private(set) var slabIndex: Int
    @usableFromInline @exclusivity(unchecked) var referenceCount: Int = 0
    @usableFromInline unowned(unsafe) let pool: BufferPool
    /// For a borrowed buffer: the lending loop's buffer whose bytes it
    /// shows, holding one reference that goes back through `lender`.
    @exclusivity(unchecked) var original: Buffer?
    @exclusivity(unchecked) var lender: BufferReturns?

    init(baseAddress: UnsafeMutableRawPointer, capacity: Int, slabIndex: Int, pool: BufferPool) {
        self.baseAddress = baseAddress
        self.capacity = capacity
        self.slabIndex = slabIndex
        self.pool = pool
    }

    /// Points a borrowed buffer at `original`'s bytes.
    func lend(_ original: Buffer, from lender: BufferReturns) {
        baseAddress = original.baseAddress
        capacity = original.capacity
        self.original = original
        self.lender = lender
    }

    /// Number of live references; 0 means the buffer is free in its pool.
    public var references: Int { referenceCount }

    @inlinable
    func retain() {
        precondition(referenceCount > 0, "retain of a buffer that is not referenced")
        referenceCount &+= 1
    }

    @inlinable
    func release() {
        precondition(referenceCount > 0, "double release of a pooled buffer")
        referenceCount &-= 1
        if referenceCount == 0 {
            pool.recycle(self)
        }
    }
}
