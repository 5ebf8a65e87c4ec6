/// Received bytes not yet consumed by the user: filled ranges of pooled
/// buffers in arrival order, each holding one buffer reference.
///
/// Data is read straight into pool memory (the current *fill* buffer) and
/// handed to the user as ``ReceivedBytes`` views over these ranges, so the
/// common case copies nothing.
package final class ReceiveQueue {
    @exclusivity(unchecked) private(set) var segments: [IOVec] = []
    private(set) var head = 0
    /// Bytes of `segments[head]` already consumed.
    private(set) var headConsumed = 0
    /// Unconsumed bytes.
    private(set) var count = 0
    /// ``count``, for a security layer in another module. The stored
    /// property stays internal: a `package` one would be reached through
    /// dynamic exclusivity checks on every I/O.
    package var unconsumedBytes: Int { count }
    private var fill: Buffer?
    private var fillOffset = 0
    private var scratch: UnsafeMutableRawPointer?
    private var scratchCapacity = 0
    unowned(unsafe) let pool: BufferPool

    package init(pool: BufferPool) {
        self.pool = pool
        segments.reserveCapacity(16)
    }

    deinit {
        scratch?.deallocate()
    }

    /// Free space to read into, at least `minimum` bytes (capped at a whole
    /// buffer): takes a fresh buffer when the fill buffer has less left, and
    /// rewinds it when nobody references its data.
    package func writableSpace(minimum: Int = 2048) throws(EvplError) -> UnsafeMutableRawBufferPointer {
        if let buffer = fill {
            if buffer.referenceCount == 1 {
                fillOffset = 0
            } else if buffer.capacity - fillOffset < min(minimum, buffer.capacity) {
                buffer.release()
                fill = nil
            }
        }
        if fill == nil {
            fill = try pool.take()
            fillOffset = 0
        }
        let buffer = fill.unsafelyUnwrapped
        return UnsafeMutableRawBufferPointer(start: buffer.baseAddress + fillOffset, count: buffer.capacity - fillOffset)
    }

    /// Lets the next ``writableSpace(minimum:)`` fill the rest of the last
    /// received buffer, one the kernel filled only in part (an io_uring
    /// provided buffer), instead of taking a new one: at the pool's
    /// ceiling a connection that holds a buffer can still read its peer's
    /// next bytes and end of stream. Only for queues whose buffers nobody
    /// else writes into.
    func reuseTailRoom(minimum: Int = 2048) {
        guard fill == nil, head < segments.count else { return }
        let last = segments[segments.count - 1]
        let end = last.offset + last.length
        guard last.buffer.capacity - end >= minimum else { return }
        last.buffer.retain()
        fill = last.buffer
        fillOffset = end
    }

    /// Records that `length` bytes were written at the start of the last
    /// `writableSpace()`.
    package func commit(_ length: Int) {
        let buffer = fill.unsafelyUnwrapped
        if head < segments.count, case let last = segments[segments.count - 1], last.buffer === buffer, last.offset + last.length == fillOffset {
            segments[segments.count - 1].length += length
        } else {
            buffer.retain()
            segments.append(IOVec(buffer: buffer, offset: fillOffset, length: length))
        }
        fillOffset += length
        count += length
    }

    /// Appends a range the queue takes a reference for (datagrams, user data).
    func append(_ iovec: IOVec) {
        segments.append(iovec)
        count += iovec.length
    }

    /// A view of the first `length` unconsumed bytes.
    package func view(length: Int) -> ReceivedBytes {
        ReceivedBytes(queue: self, segment: head, offset: headConsumed, count: length)
    }

    /// Drops the first `length` bytes, releasing emptied buffers.
    package func consume(_ length: Int) {
        precondition(length <= count)
        var remaining = length
        count -= length
        while remaining > 0 {
            let segment = segments[head]
            let available = segment.length - headConsumed
            if remaining < available {
                headConsumed += remaining
                return
            }
            remaining -= available
            segment.buffer.release()
            head += 1
            headConsumed = 0
        }
        if head == segments.count {
            segments.removeAllKeepingCapacity()
            head = 0
        } else if head >= 64 && head * 2 >= segments.count {
            segments.removeFirst(head)
            head = 0
        }
    }

    /// Gives back the fill buffer of an empty queue, so that a connection
    /// with nothing to deliver holds no pool memory (the next read takes a
    /// buffer again).
    func releaseIdleFill() {
        guard count == 0, let buffer = fill else { return }
        buffer.release()
        fill = nil
    }

    /// Releases every reference the queue holds.
    package func releaseAll() {
        consume(count)
        for index in head..<segments.count { segments[index].buffer.release() }
        segments.removeAll()
        head = 0
        fill?.release()
        fill = nil
    }

    func scratchSpace(_ length: Int) -> UnsafeMutableRawPointer {
        if scratchCapacity < length {
            scratch?.deallocate()
            scratchCapacity = max(length, 4096)
            scratch = .allocate(byteCount: scratchCapacity, alignment: 16)
        }
        return scratch.unsafelyUnwrapped
    }
}
