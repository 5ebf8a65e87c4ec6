import CURing

/// A provided-buffer ring: pool buffers lent to the kernel, which picks one
/// for each multishot receive completion.
///
/// Each slot holds one pool buffer and the ring's reference to it. A
/// completion hands that reference to the receiver (the data stays where the
/// kernel wrote it); the empty slot is refilled from the pool after each
/// batch of completions, so a buffer the user releases returns, through the
/// pool, to the ring.
///
/// Where the kernel consumes buffers incrementally (`IOU_PBUF_RING_INC`,
/// 6.12+), a receive takes only the bytes it got: the next receive into the
/// same buffer goes on after them, and a completion flagged
/// `IORING_CQE_F_BUF_MORE` leaves the buffer in the ring. The receiver then
/// gets a reference of its own, so that 64 one-byte messages share one
/// buffer instead of taking 64.
final class ProvidedBuffers {
    /// The buffer group receives select from.
    let group: UInt16
    private unowned(unsafe) let uring: URing
    private unowned(unsafe) let pool: BufferPool
    private let ring: UnsafeMutablePointer<io_uring_buf_ring>
    /// The io_uring the ring is registered with, kept so that the deinit,
    /// which runs inside the `URing`'s own, does not reach back into it.
    private let uringRing: UnsafeMutablePointer<io_uring>
    private let entries: Int
    private let slots: UnsafeMutablePointer<Buffer?>
    /// Per slot, the bytes of its buffer earlier receives took (incremental
    /// consumption only).
    private let consumed: UnsafeMutablePointer<Int>
    @exclusivity(unchecked) private var emptySlots: [UInt16] = []
    /// Whether the kernel consumes the buffers incrementally.
    let isIncremental: Bool

    init(uring: URing, pool: BufferPool, entries: Int, group: UInt16) throws(EvplError) {
        self.uring = uring
        self.pool = pool
        self.entries = entries
        self.group = group
        var error: Int32 = 0
        var incremental = true
        var registered = SystemCalls.uringRegisterBuffers(uring.ring, UInt32(entries), group, flags: CEVPL_IOU_PBUF_RING_INC, &error)
        if registered == nil && error == EINVAL {
            // A kernel before 6.12: a receive takes a whole buffer.
            incremental = false
            registered = SystemCalls.uringRegisterBuffers(uring.ring, UInt32(entries), group, flags: 0, &error)
        }
        guard let ring = registered else {
            throw EvplError(errno: error, operation: "io_uring_register_buf_ring", context: "\(entries) entries")
        }
        self.ring = ring
        isIncremental = incremental
        uringRing = uring.ring
        slots = .allocate(capacity: entries)
        slots.initialize(repeating: nil, count: entries)
        consumed = .allocate(capacity: entries)
        consumed.initialize(repeating: 0, count: entries)
        emptySlots = (0..<UInt16(truncatingIfNeeded: entries)).reversed()
        emptySlots.reserveCapacity(entries)
    }

    deinit {
        cevpl_uring_unregister_buffer_ring(uringRing, ring, UInt32(entries), group)
        for index in 0..<entries {
            if let buffer = slots[index] {
                pool.buffersLentToKernel -= 1
                buffer.release()
            }
        }
        slots.deinitialize(count: entries)
        slots.deallocate()
        consumed.deallocate()
    }

    /// The bytes a completion with `flags` and `result` received into the
    /// buffer with id `id`, with a reference for the receiver: the ring's own
    /// when the kernel is done with the buffer, a new one when it keeps it
    /// (`IORING_CQE_F_BUF_MORE`).
    func claim(_ id: UInt16, flags: UInt32, result: Int32) -> IOVec? {
        let index = Int(id)
        guard index < entries, let buffer = slots[index] else { return nil }
        let length = max(0, Int(result))
        let offset = consumed[index]
        if isIncremental && flags & CEVPL_IORING_CQE_F_BUF_MORE != 0 {
            consumed[index] = offset + length
            buffer.retain()
            return IOVec(buffer: buffer, offset: offset, length: length)
        }
        consumed[index] = 0
        slots[index] = nil
        emptySlots.append(id)
        pool.buffersLentToKernel -= 1
        return IOVec(buffer: buffer, offset: offset, length: length)
    }

    /// Whether the kernel has no buffer left to receive into.
    var isEmpty: Bool { emptySlots.count == entries }

    /// Whether a stream receive has used the ring: until then it holds no
    /// pool buffer, so a loop that only sends, serves datagrams or does
    /// block I/O lends nothing to it.
    private(set) var isActive = false

    /// Fills the ring for its first stream receive.
    func activate() {
        guard !isActive else { return }
        isActive = true
        refill()
    }

    /// Lends a fresh pool buffer to every empty slot (as many as the pool can
    /// give) and publishes them to the kernel with one tail update.
    func refill() {
        guard isActive, !emptySlots.isEmpty else { return }
        let mask = io_uring_buf_ring_mask(UInt32(entries))
        var added: Int32 = 0
        while !emptySlots.isEmpty {
            // Past half the pool, an empty ring still gets one buffer (below
            // the ceiling): receives then make progress one at a time.
            let buffer: Buffer
            if let lent = try? pool.takeForRing() {
                buffer = lent
            } else if emptySlots.count == entries, let last = try? pool.take() {
                buffer = last
            } else {
                break
            }
            let id = emptySlots.removeLast()
            slots[Int(id)] = buffer
            io_uring_buf_ring_add(ring, buffer.baseAddress, UInt32(buffer.capacity), id, mask, added)
            added += 1
        }
        if added > 0 {
            pool.buffersLentToKernel += Int(added)
            io_uring_buf_ring_advance(ring, added)
        }
    }
}
