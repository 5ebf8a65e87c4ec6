import CEvplLinux
#if canImport(Glibc)
import Glibc
#endif

/// Bytes queued on a connection, in order, as ranges of pooled buffers that
/// each hold one reference.
///
/// Small copied payloads are packed into a shared *fill* buffer and adjacent
/// ones coalesce into a single range, so a burst of small sends becomes one
/// iovec. A flush gathers up to `IOV_MAX` ranges into one `sendmsg`.
struct SendQueue {
    private var entries: [IOVec] = []
    private var head = 0
    private var headSent = 0
    private var fill: Buffer?
    private var fillOffset = 0
    /// Cumulative byte offsets at which each queued message ends, kept only
    /// while sent notifications are on.
    private var messageEnds: [UInt64] = []
    private var messageHead = 0
    /// Bytes queued and not yet written.
    private(set) var count = 0
    /// Bytes ever queued and ever written, for sent notifications.
    private(set) var totalQueued: UInt64 = 0
    private(set) var totalSent: UInt64 = 0

    var isEmpty: Bool { count == 0 }

    init() {
        entries.reserveCapacity(32)
    }

    /// Copies `bytes` into pool buffers and queues them. Throws
    /// `.resourceExhausted`, queueing nothing, when the pool cannot hold
    /// the copy below its ceiling, less the receive reserve unless
    /// `intoReserve` (bytes a protocol must write to go on, such as TLS
    /// handshake messages and alerts).
    mutating func append(copying bytes: UnsafeRawBufferPointer, pool: BufferPool, trackMessage: Bool, intoReserve: Bool = false) throws(EvplError) {
        // Whatever fills the current buffer, the copy needs at most
        // ceil(count / bufferSize) new ones: count the exact need only when
        // that many might not be free.
        let room = intoReserve ? pool.availableBuffers : pool.availableForSending
        if bytes.count > room &* pool.bufferSize {
            try checkRoom(for: bytes.count, in: pool, intoReserve: intoReserve)
        }
        var source = bytes.baseAddress
        var remaining = bytes.count
        while remaining > 0 {
            if let buffer = fill, buffer.referenceCount == 1 {
                fillOffset = 0
            } else if fill == nil || fillOffset == fill.unsafelyUnwrapped.capacity {
                fill?.release()
                fill = nil
                fill = try pool.take()
                fillOffset = 0
            }
            let buffer = fill.unsafelyUnwrapped
            let length = min(remaining, buffer.capacity - fillOffset)
            (buffer.baseAddress + fillOffset).copyMemory(from: source.unsafelyUnwrapped, byteCount: length)
            if head < entries.count, case let last = entries[entries.count - 1], last.buffer === buffer, last.offset + last.length == fillOffset {
                entries[entries.count - 1].length += length
            } else {
                buffer.retain()
                entries.append(IOVec(buffer: buffer, offset: fillOffset, length: length))
            }
            fillOffset += length
            source = source.unsafelyUnwrapped + length
            remaining -= length
        }
        noteQueued(bytes.count, trackMessage: trackMessage)
    }

    /// Throws `.resourceExhausted` when copying `count` bytes would take
    /// more new buffers than the pool leaves to sends
    /// (``BufferPool/availableForSending``), or with `intoReserve`, more
    /// than it has below its ceiling.
    func checkRoom(for count: Int, in pool: BufferPool, intoReserve: Bool = false) throws(EvplError) {
        guard count > fillSpace else { return }
        let needed = (count - fillSpace + pool.bufferSize - 1) / pool.bufferSize
        guard needed > (intoReserve ? pool.availableBuffers : pool.availableForSending) else { return }
        throw EvplError(.resourceExhausted, operation: "send", context: "\(count) bytes need \(needed) more pool buffers than sends may take: the ceiling of \(pool.maxBuffers) (EVPL_POOL_MAX_BYTES) or the process budget, less \(pool.receiveReserve) kept for receives")
    }

    /// Bytes the current fill buffer can still take without a new buffer.
    private var fillSpace: Int {
        guard let fill else { return 0 }
        return fill.referenceCount == 1 ? fill.capacity : fill.capacity - fillOffset
    }

    /// Gives back the fill buffer once everything was written, so that a
    /// connection with nothing to send holds no pool memory.
    mutating func releaseIdleFill() {
        guard count == 0, let buffer = fill else { return }
        buffer.release()
        fill = nil
    }

    /// Queues `iovec`, taking over the reference its caller holds.
    mutating func append(taking iovec: IOVec, trackMessage: Bool) {
        entries.append(iovec)
        noteQueued(iovec.length, trackMessage: trackMessage)
    }

    /// Marks the end of a message made of several appends.
    mutating func endMessage() {
        messageEnds.append(totalQueued)
    }

    private mutating func noteQueued(_ length: Int, trackMessage: Bool) {
        count += length
        totalQueued &+= UInt64(length)
        if trackMessage { messageEnds.append(totalQueued) }
    }

    /// Writes as much as the socket takes. Returns the bytes written, or the
    /// `errno` of a fatal failure. `EAGAIN` is not a failure.
    mutating func flush(fd: Int32, scratch: UnsafeMutablePointer<iovec>) -> (written: Int, error: Int32) {
        var written = 0
        let limit = Int(cevpl_iov_max())
        while count > 0 {
            let (vectors, attempted) = gather(into: scratch, limit: limit)
            let result: Int
            if vectors == 1 {
                result = SystemCalls.send(fd, scratch[0].iov_base, scratch[0].iov_len, CEVPL_SEND_FLAGS)
            } else {
                var message = msghdr()
                message.msg_iov = scratch
                message.msg_iovlen = vectors
                result = SystemCalls.sendmsg(fd, &message, CEVPL_SEND_FLAGS)
            }
            if result < 0 {
                let code = Glibc.errno
                if code == EINTR { continue }
                return (written, code == EAGAIN ? 0 : code)
            }
            advance(result)
            written += result
            if result < attempted { break }
        }
        return (written, 0)
    }

    /// Describes up to `limit` unsent ranges, oldest first, in `vectors`.
    /// Returns how many and their total length.
    func gather(into vectors: UnsafeMutablePointer<iovec>, limit: Int) -> (count: Int, bytes: Int) {
        var count = 0
        var bytes = 0
        var index = head
        while index < entries.count && count < limit {
            let entry = entries[index]
            let skip = index == head ? headSent : 0
            vectors[count] = iovec(iov_base: entry.baseAddress + skip, iov_len: entry.length - skip)
            bytes += entry.length - skip
            count += 1
            index += 1
        }
        return (count, bytes)
    }

    /// Takes an extra reference on the buffers of the first `count` unsent
    /// ranges, appending them to `held`: an asynchronous send keeps its
    /// memory alive until the kernel is done with it, whatever the queue does.
    func retainHead(_ count: Int, into held: inout [Buffer]) {
        for index in head..<min(head + count, entries.count) {
            let buffer = entries[index].buffer
            buffer.retain()
            held.append(buffer)
        }
    }

    /// Marks `length` bytes from the head as written.
    mutating func markWritten(_ length: Int) {
        advance(length)
    }

    private mutating func advance(_ length: Int) {
        var remaining = length
        count -= length
        totalSent &+= UInt64(length)
        while remaining > 0 {
            let available = entries[head].length - headSent
            if remaining < available {
                headSent += remaining
                break
            }
            remaining -= available
            entries[head].buffer.release()
            head += 1
            headSent = 0
        }
        dropWrittenEntries()
    }

    /// Moves up to `limit` bytes from the head into `destination`, each
    /// range with the reference the queue held for it (a range cut at the
    /// limit takes one more reference), and counts them as written: the
    /// in-process transport hands its ranges to the peer this way, with no
    /// copy. Returns the bytes moved.
    mutating func transfer(upTo limit: Int, into destination: inout [IOVec]) -> Int {
        var moved = 0
        while head < entries.count && moved < limit {
            var entry = entries[head]
            entry.offset += headSent
            entry.length -= headSent
            let length = min(entry.length, limit - moved)
            moved += length
            if length < entry.length {
                entry.buffer.retain()
                destination.append(IOVec(buffer: entry.buffer, offset: entry.offset, length: length))
                headSent += length
                break
            }
            destination.append(entry)
            head += 1
            headSent = 0
        }
        count -= moved
        totalSent &+= UInt64(moved)
        dropWrittenEntries()
        return moved
    }

    private mutating func dropWrittenEntries() {
        if head == entries.count {
            entries.removeAllKeepingCapacity()
            head = 0
        } else if head >= 64 && head * 2 >= entries.count {
            entries.removeFirst(head)
            head = 0
        }
    }

    /// Number of tracked messages whose last byte has been written since the
    /// previous call.
    mutating func takeCompletedMessages() -> Int {
        var completed = 0
        while messageHead < messageEnds.count && messageEnds[messageHead] <= totalSent {
            messageHead += 1
            completed += 1
        }
        if messageHead == messageEnds.count {
            messageEnds.removeAllKeepingCapacity()
            messageHead = 0
        }
        return completed
    }

    /// Drops everything queued, releasing every reference.
    mutating func releaseAll() {
        for index in head..<entries.count { entries[index].buffer.release() }
        entries.removeAll()
        head = 0
        headSent = 0
        count = 0
        fill?.release()
        fill = nil
        messageEnds.removeAll()
        messageHead = 0
    }
}
