/// A byte range inside a pooled ``Buffer``: the unit of zero-copy data.
///
/// An `IOVec` is a plain value; copying it does not add a reference. Whoever
/// holds a reference says so explicitly: a received `IOVec` obtained through
/// ``ReceivedBytes/retainedIOVecs()`` or from ``BufferPool/allocate()`` carries
/// one reference that its owner gives back with ``release()`` or hands to a
/// send call.
public struct IOVec {
    /// The pooled buffer the bytes live in. Not a counted Swift reference:
    /// the pool owns every buffer for its whole life (as it owns the memory
    /// behind ``baseAddress``), so copying an `IOVec` costs no atomic
    /// reference-count traffic.
    public unowned(unsafe) let buffer: Buffer
    /// Offset of the first byte within the buffer.
    public var offset: Int
    /// Number of bytes.
    public var length: Int

    /// Creates a view of `length` bytes at `offset` in `buffer`.
    @inlinable
    public init(buffer: Buffer, offset: Int, length: Int) {
        precondition(offset >= 0 && length >= 0 && offset + length <= buffer.capacity, "IOVec outside its buffer")
        self.buffer = buffer
        self.offset = offset
        self.length = length
    }

    /// Address of the first byte.
    @inlinable
    public var baseAddress: UnsafeMutableRawPointer { unmanagedBuffer._withUnsafeGuaranteedRef { $0.baseAddress } + offset }

    /// The bytes, valid while a reference is held.
    @inlinable
    public var bytes: UnsafeMutableRawBufferPointer {
        UnsafeMutableRawBufferPointer(start: baseAddress, count: length)
    }

    /// Adds a reference to the underlying buffer.
    @inlinable
    public func retain() { unmanagedBuffer._withUnsafeGuaranteedRef { $0.retain() } }

    /// Drops a reference; the last one returns the buffer to its pool.
    @inlinable
    public func release() { unmanagedBuffer._withUnsafeGuaranteedRef { $0.release() } }

    /// ``buffer``, reached without the Swift reference count: a plain load
    /// of an `unowned(unsafe)` field still costs a retain and a release
    /// around each use, which the pool's ownership makes needless.
    @inlinable
    var unmanagedBuffer: Unmanaged<Buffer> { Unmanaged.passUnretained(buffer) }

    /// The same buffer narrowed to `length` bytes starting `start` bytes in.
    @inlinable
    public func slice(from start: Int, length: Int) -> IOVec {
        precondition(start >= 0 && length >= 0 && start + length <= self.length)
        return IOVec(buffer: buffer, offset: offset + start, length: length)
    }
}
