#if canImport(Glibc)
import Glibc
#endif

/// A borrowed view of received bytes: a whole message, a datagram, or a
/// chunk of a raw stream. Valid only during the callback that receives it.
///
/// The bytes live in pooled buffers and may span several of them. Read them
/// in place with ``withContiguousBytes(_:)`` or ``forEachSegment(_:)``, copy
/// them out with ``copyBytes(to:)``, or keep them without copying through
/// ``retainedIOVecs()``.
public struct ReceivedBytes {
    unowned(unsafe) let queue: ReceiveQueue
    let segment: Int
    let offset: Int
    /// Number of bytes.
    public let count: Int

    init(queue: ReceiveQueue, segment: Int, offset: Int, count: Int) {
        self.queue = queue
        self.segment = segment
        self.offset = offset
        self.count = count
    }

    /// Calls `body` with each contiguous piece, in order.
    public func forEachSegment(_ body: (UnsafeRawBufferPointer) throws -> Void) rethrows {
        try forEachIOVec { try body(UnsafeRawBufferPointer($0.bytes)) }
    }

    /// Walks the pooled ranges the bytes occupy, narrowed to this view.
    func forEachIOVec(_ body: (IOVec) throws -> Void) rethrows {
        var remaining = count
        var index = segment
        var skip = offset
        while remaining > 0 {
            let iovec = queue.segments[index]
            let length = min(iovec.length - skip, remaining)
            try body(iovec.slice(from: skip, length: length))
            remaining -= length
            index += 1
            skip = 0
        }
    }

    /// Calls `body` with all the bytes in one piece: in place when they lie
    /// in one buffer, otherwise gathered into a reused scratch area.
    public func withContiguousBytes<R>(_ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
        // An empty datagram occupies no segment at all.
        guard count > 0 else { return try body(UnsafeRawBufferPointer(start: nil, count: 0)) }
        let first = queue.segments[segment]
        if first.length - offset >= count {
            return try body(UnsafeRawBufferPointer(start: first.baseAddress + offset, count: count))
        }
        let scratch = queue.scratchSpace(count)
        copyBytes(to: UnsafeMutableRawBufferPointer(start: scratch, count: count))
        return try body(UnsafeRawBufferPointer(start: scratch, count: count))
    }

    /// Copies the bytes into `destination`, which must hold at least `count`.
    public func copyBytes(to destination: UnsafeMutableRawBufferPointer) {
        precondition(destination.count >= count, "destination too small")
        var position = 0
        forEachSegment { piece in
            (destination.baseAddress.unsafelyUnwrapped + position).copyMemory(from: piece.baseAddress.unsafelyUnwrapped, byteCount: piece.count)
            position += piece.count
        }
    }

    /// The bytes as a new array (allocates; for tests and slow paths).
    public var array: [UInt8] {
        [UInt8](unsafeUninitializedCapacity: count) { storage, initialized in
            copyBytes(to: UnsafeMutableRawBufferPointer(storage))
            initialized = count
        }
    }

    /// The byte at `position` (0-based), without copying the rest.
    public subscript(position: Int) -> UInt8 {
        precondition(position >= 0 && position < count, "index out of range")
        var index = segment
        var at = offset + position
        while at >= queue.segments[index].length {
            at -= queue.segments[index].length
            index += 1
        }
        return queue.segments[index].bytes[at]
    }

    /// A big-endian `UInt16` starting at `position`, for short headers and ports.
    public func loadBigEndianUInt16(at position: Int = 0) -> UInt16 {
        loadBigEndian(at: position)
    }

    /// A big-endian `UInt32` starting at `position`, for length headers.
    public func loadBigEndianUInt32(at position: Int = 0) -> UInt32 {
        loadBigEndian(at: position)
    }

    /// A big-endian `UInt64` starting at `position`, for offsets and XDR hypers.
    public func loadBigEndianUInt64(at position: Int = 0) -> UInt64 {
        loadBigEndian(at: position)
    }

    private func loadBigEndian<Value: FixedWidthInteger & UnsignedInteger>(at position: Int) -> Value {
        let size = MemoryLayout<Value>.size
        precondition(position >= 0 && position + size <= count, "not enough bytes")
        var value: Value = 0
        for index in 0..<size { value = value << 8 | Value(self[position + index]) }
        return value
    }

    /// The `length` bytes from `start` on, as a view of the same buffers: no
    /// copy, so ``retainedIOVecs()`` of it keeps a frame's payload without
    /// its header. Valid as long as this view is.
    public func subrange(from start: Int, length: Int) -> ReceivedBytes {
        precondition(start >= 0 && length >= 0 && start + length <= count, "range out of bounds")
        var index = segment
        var at = offset + start
        while at > 0 && at >= queue.segments[index].length && index + 1 < queue.segments.count {
            at -= queue.segments[index].length
            index += 1
        }
        return ReceivedBytes(queue: queue, segment: index, offset: at, count: length)
    }

    /// The bytes after the first `length`, without a copy (a frame's payload
    /// after its header).
    public func dropFirst(_ length: Int) -> ReceivedBytes {
        subrange(from: length, length: count - length)
    }

    /// The length of the prefix that ends with the first `delimiter` lying
    /// wholly within the first `limit` bytes, or `nil` when there is none.
    func lengthThrough(_ delimiter: [UInt8], within limit: Int) -> Int? {
        let searched = min(count, limit)
        guard searched >= delimiter.count else { return nil }
        // The last position a delimiter may start at.
        let lastStart = searched - delimiter.count
        let first = Int32(delimiter[0])
        var position = 0
        var index = segment
        var skip = offset
        while position <= lastStart {
            let iovec = queue.segments[index]
            let start = iovec.baseAddress + skip
            let candidates = min(iovec.length - skip, lastStart - position + 1)
            var at = 0
            while at < candidates, let found = memchr(start + at, first, candidates - at) {
                let candidate = position + (UnsafeRawPointer(found) - UnsafeRawPointer(start))
                if matches(delimiter, at: candidate) { return candidate + delimiter.count }
                at = candidate - position + 1
            }
            position += iovec.length - skip
            index += 1
            skip = 0
        }
        return nil
    }

    /// Whether the bytes from `position` on are `delimiter`, its first byte
    /// already known to match.
    private func matches(_ delimiter: [UInt8], at position: Int) -> Bool {
        for index in 1..<delimiter.count where self[position + index] != delimiter[index] { return false }
        return true
    }

    /// The bytes as IOVecs into pool memory, each carrying a new reference the
    /// caller must ``IOVec/release()`` (or pass to a send call). No copy.
    public func retainedIOVecs() -> [IOVec] {
        var result: [IOVec] = []
        forEachIOVec { iovec in
            iovec.retain()
            result.append(iovec)
        }
        return result
    }
}
