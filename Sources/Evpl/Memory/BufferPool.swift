#if canImport(Glibc)
import Glibc
#endif

/// A pool of fixed-size buffers carved from large `mmap`ed slabs.
///
/// Slabs are mapped on demand and never unmapped while the pool lives, so a
/// backend that must register memory (io_uring fixed buffers, RDMA memory
/// regions) registers each slab exactly once, through a registration hook,
/// and never per I/O. One pool belongs to one event loop; it takes no locks.
///
/// The pool is bounded: past ``maxBuffers`` buffers in use, taking one
/// throws `.resourceExhausted` (connections pause receiving instead).
/// And memory comes back: ``trim()`` returns the pages of buffers that
/// stayed free for a whole trim interval, beyond ``idleBuffersKept``, to
/// the kernel (`MADV_DONTNEED`; the mapping stays). Memory registered
/// through a hook is trimmed a whole slab at a time: once every buffer of
/// a slab stayed free, the slab is unregistered (the kernel drops its pin),
/// its pages go back, and it is registered again when one of its buffers
/// is next taken. A hook without an unregister keeps its slabs resident.
public final class BufferPool {
    /// Called once for each slab, existing and future, with its whole memory
    /// (and again after a trim unregistered it).
    public typealias RegistrationHook = (_ slab: UnsafeMutableRawBufferPointer, _ slabIndex: Int) -> Void
    /// Undoes a ``RegistrationHook`` for one slab, so its pages can go back
    /// to the kernel.
    public typealias UnregistrationHook = (_ slabIndex: Int) -> Void

    /// Bytes per buffer.
    public let bufferSize: Int
    /// Buffers per slab.
    public let buffersPerSlab: Int
    private var slabs: [UnsafeMutableRawBufferPointer] = []
    @exclusivity(unchecked) private var free: [Buffer] = []
    private var hooks: [RegistrationHook] = []
    private var unregistrationHooks: [UnregistrationHook] = []
    /// A hook was added without a way to undo it: its slabs stay resident.
    private var pinnedForGood = false
    /// Per slab: registered through the hooks (false after a trim unregistered it).
    private var slabRegistered: [Bool] = []
    /// Slabs a trim unregistered, registered again when next used.
    @exclusivity(unchecked) private var unregisteredSlabs = 0
    private var everCreated: [Buffer] = []
    /// Buffers that show another loop's bytes, free for the next borrow;
    /// every one made is kept in `everBorrowed` (an ``IOVec`` does not
    /// keep its buffer alive).
    @exclusivity(unchecked) private var freeBorrowed: [Buffer] = []
    private var everBorrowed: [Buffer] = []
    /// This pool's buffers whose bytes other loops still show, as far as
    /// this loop has heard.
    @exclusivity(unchecked) var buffersLentToLoops = 0
    /// Where other loops give this pool's buffers back: a pool that goes
    /// while some are lent hands it its slabs and buffers to keep.
    var lendingReturns: BufferReturns?

    /// Number of buffers currently referenced (handed out and not yet released).
    @exclusivity(unchecked) public private(set) var buffersInUse: Int = 0
    /// The most buffers that may be in use at once.
    public let maxBuffers: Int
    /// Free buffers whose memory stays resident however long they are idle.
    public let idleBuffersKept: Int
    /// The process-wide budget the pool reserves from, if any.
    public let budget: MemoryBudget?
    /// Buffers' worth reserved from ``budget``: taking a buffer at this
    /// many in use reserves more first (`Int.max` without a budget).
    @exclusivity(unchecked) private var reservedBuffers = Int.max
    /// Below this many in use, a chunk goes back to the budget (`Int.min`
    /// without one).
    @exclusivity(unchecked) private var releaseBelow = Int.min
    /// Buffers reserved from the budget at a time.
    static let budgetChunk = 16
    /// Buffers whose pages went back to the kernel, ever.
    public private(set) var buffersTrimmed: UInt64 = 0
    /// Called (on the pool's loop) when a later ``trim()`` has work to do.
    var trimScheduler: (() -> Void)?
    private var trimScheduled = false
    /// Trims run so far.
    private(set) var trims = 0
    /// The most buffers in use at once since the last trim.
    @exclusivity(unchecked) private var peakInUseSinceTrim = 0
    /// The fewest free buffers since the last trim: `free[0..<lowWater]`
    /// stayed free all along (the free list is a stack), or had their
    /// pages returned: never below ``trimmedPrefix``.
    @exclusivity(unchecked) private var lowWater = 0
    /// `free[0..<trimmedPrefix]` have had their pages returned.
    @exclusivity(unchecked) private var trimmedPrefix = 0
    /// Of ``buffersInUse``, the buffers a backend has lent to the kernel to
    /// receive into (io_uring provided buffers): referenced by design, not
    /// leaked. `buffersInUse - buffersLentToKernel` is what the application
    /// and the connections hold.
    public internal(set) var buffersLentToKernel: Int = 0

    /// Creates an empty pool; the first slab is mapped on the first allocation.
    ///
    /// - Parameters:
    ///   - bufferSize: bytes per buffer.
    ///   - buffersPerSlab: buffers carved from each `mmap`ed slab.
    ///   - maxBytes: the ceiling on buffer memory in use (at least one buffer).
    ///   - idleBytesKept: free buffer memory that stays resident when idle.
    ///   - budget: a process-wide budget the pool reserves from as it grows
    ///     (see ``MemoryBudget``); `nil` bounds it by `maxBytes` alone.
    public init(bufferSize: Int, buffersPerSlab: Int, maxBytes: Int = .max, idleBytesKept: Int = 8 << 20, budget: MemoryBudget? = nil) {
        precondition(bufferSize > 0 && buffersPerSlab > 0)
        self.bufferSize = bufferSize
        self.buffersPerSlab = buffersPerSlab
        self.maxBuffers = max(1, maxBytes / bufferSize)
        self.idleBuffersKept = max(0, idleBytesKept / bufferSize)
        self.pressureMark = max(1, maxBuffers - maxBuffers / 4)
        self.receiveReserve = min(maxBuffers / 2, max(2, maxBuffers / 16))
        self.budget = budget
        if budget != nil {
            reservedBuffers = 0
            releaseBelow = -Self.budgetChunk
        }
    }

    deinit {
        if let budget, reservedBuffers > 0 { budget.release(reservedBuffers * bufferSize) }
        // Another loop still shows some of these bytes (a loop ended
        // before its in-process peers): the memory outlives the pool, as
        // long as the mailbox that channels and borrowed buffers hold.
        if buffersLentToLoops > 0, let lendingReturns {
            lendingReturns.keepAlive(slabs: slabs, buffers: everCreated)
            return
        }
        for slab in slabs {
            munmap(slab.baseAddress, slab.count)
        }
    }

    /// Number of slabs mapped so far.
    public var slabCount: Int { slabs.count }

    /// Adds a hook that registers slab memory with a backend. It runs at once
    /// for every slab already mapped, then for each new slab when it is mapped.
    /// With `unregister`, a trim may undo the registration of a slab whose
    /// buffers all stayed free and return its pages (the hook runs again
    /// for the slab when it is used again); without it, registered slabs
    /// are never trimmed.
    public func addRegistrationHook(_ hook: @escaping RegistrationHook, unregister: UnregistrationHook? = nil) {
        hooks.append(hook)
        if let unregister { unregistrationHooks.append(unregister) } else { pinnedForGood = true }
        for (index, slab) in slabs.enumerated() where slabRegistered[index] {
            hook(slab, index)
        }
    }

    /// Takes a buffer with one reference, wrapped as an `IOVec` spanning all of it.
    ///
    /// - Throws: ``EvplError`` when a new slab cannot be mapped.
    @inlinable
    public func allocate() throws(EvplError) -> IOVec {
        let buffer = try take()
        return IOVec(buffer: buffer, offset: 0, length: buffer.capacity)
    }

    /// Whether three quarters of the ceiling are in use: connections then
    /// give back the fill buffers they keep for their next read or send as
    /// soon as their queues empty, so that memory goes to bytes held.
    public var isUnderPressure: Bool { buffersInUse >= pressureMark }
    private let pressureMark: Int

    /// How many more buffers can be taken now: below the ceiling, and
    /// within what is reserved plus what the budget still has.
    public var availableBuffers: Int {
        let belowCeiling = maxBuffers - buffersInUse
        guard let budget else { return belowCeiling }
        let inBudget = max(0, reservedBuffers - buffersInUse) + max(0, budget.limit - budget.bytesReserved) / bufferSize
        return min(belowCeiling, inBudget)
    }

    /// Buffers that copying sends leave to receives: a send that would
    /// take the pool (or the budget) past ``availableBuffers`` less this
    /// many throws `.resourceExhausted` instead. Send queues that peers do
    /// not drain then cannot take the last memory a receive needs to make
    /// progress: with two ends of a connection on one loop, or a server
    /// whose clients stop reading, a pool filled by sends would otherwise
    /// stop every receive, and with them the reads that drain the sends.
    /// A sixteenth of the ceiling, at least two buffers (a TLS record's
    /// ciphertext and its plaintext), at most half the ceiling.
    public let receiveReserve: Int

    /// How many more buffers a copying send may take: ``availableBuffers``
    /// less ``receiveReserve``.
    public var availableForSending: Int { max(0, availableBuffers - receiveReserve) }

    /// Whether a buffer can be taken below the ceiling (and within the budget).
    public var hasRoom: Bool {
        guard buffersInUse < maxBuffers else { return false }
        guard buffersInUse >= reservedBuffers, let budget else { return true }
        return budget.hasRoom(for: bufferSize)
    }

    /// The most buffers in use at which a provided-buffer ring may still
    /// fill more than one slot: half the pool, so that buffers lent to the
    /// kernel ahead of any data cannot starve the sends and reads of
    /// connections that have data.
    var ringLimit: Int { max(1, maxBuffers / 2) }

    /// Takes a buffer to lend to a provided-buffer ring, below ``ringLimit``.
    func takeForRing() throws(EvplError) -> Buffer {
        guard buffersInUse < ringLimit else { throw exhausted() }
        return try take()
    }

    @usableFromInline
    func take() throws(EvplError) -> Buffer {
        guard buffersInUse < maxBuffers else { throw exhausted() }
        if buffersInUse >= reservedBuffers { try reserveFromBudget() }
        if free.isEmpty {
            try mapSlab()
        }
        let buffer = free.removeLast()
        if unregisteredSlabs > 0 && !slabRegistered[buffer.slabIndex] { registerAgain(buffer.slabIndex) }
        let remaining = free.count
        if remaining < lowWater {
            lowWater = remaining
            if remaining < trimmedPrefix {
                // A trimmed buffer is in use again: its pages fault back in.
                trimmedPrefix = remaining
                scheduleTrim()
            }
        }
        buffer.referenceCount = 1
        buffersInUse &+= 1
        if buffersInUse > peakInUseSinceTrim { peakInUseSinceTrim = buffersInUse }
        return buffer
    }

    /// Reserves a chunk of buffers from the budget, or one when a chunk
    /// does not fit.
    private func reserveFromBudget() throws(EvplError) {
        guard let budget else { return }
        for count in [Self.budgetChunk, 1] where budget.reserve(count * bufferSize) {
            reservedBuffers += count
            updateReleaseMark()
            trimUnreserved()
            return
        }
        throw EvplError(.resourceExhausted, operation: "allocate buffer",
                        context: "process pool budget of \(budget.limit) bytes reached (EVPL_PROCESS_POOL_MAX_BYTES)")
    }

    /// Gives a chunk back to the budget once the pool uses well below what
    /// it reserved.
    private func returnToBudget() {
        guard let budget else { return }
        budget.release(Self.budgetChunk * bufferSize)
        reservedBuffers -= Self.budgetChunk
        updateReleaseMark()
        trimUnreserved()
    }

    /// Returns the pages of the free buffers that are not paid for (beyond
    /// what is reserved and not in use), longest-free first, so that the
    /// pages a budgeted pool keeps never exceed what it reserved: what
    /// other loops reserve must not add to memory this pool still holds.
    /// Registered slabs trim whole, later.
    private func trimUnreserved() {
        guard hooks.isEmpty else { return }
        let end = free.count - max(0, reservedBuffers - buffersInUse)
        guard trimmedPrefix < end else { return }
        for index in trimmedPrefix..<end {
            _ = madvise(free[index].baseAddress, free[index].capacity, MADV_DONTNEED)
        }
        buffersTrimmed &+= UInt64(end - trimmedPrefix)
        trimmedPrefix = end
        // `take` notices a trimmed buffer coming back into use only below
        // the low-water mark.
        lowWater = max(lowWater, end)
    }

    /// Below how many buffers in use a chunk goes back: two chunks under
    /// what is reserved, never taking the reservation below the free
    /// buffers the pool keeps resident (``idleBuffersKept``), so that what
    /// stays resident is always paid for.
    private func updateReleaseMark() {
        releaseBelow = reservedBuffers - Self.budgetChunk >= idleBuffersKept ? reservedBuffers - 2 * Self.budgetChunk : Int.min
    }

    private func exhausted() -> EvplError {
        EvplError(.resourceExhausted, operation: "allocate buffer",
                  context: "pool ceiling of \(maxBuffers) buffers of \(bufferSize) bytes reached (EVPL_POOL_MAX_BYTES)")
    }

    /// Returns to the kernel the pages of free buffers that stayed free
    /// since the previous trim, keeping the ``idleBuffersKept`` most
    /// recently used ones resident. Asks for another trim while more than
    /// that floor is resident (in use or free).
    public func trim() {
        trimScheduled = false
        trims &+= 1
        while peakInUseSinceTrim < releaseBelow { returnToBudget() }
        peakInUseSinceTrim = buffersInUse
        guard hooks.isEmpty else {
            trimRegisteredSlabs()
            return
        }
        let target = max(0, min(lowWater, free.count - idleBuffersKept))
        if trimmedPrefix < target {
            for index in trimmedPrefix..<target {
                let buffer = free[index]
                _ = madvise(buffer.baseAddress, buffer.capacity, MADV_DONTNEED)
            }
            buffersTrimmed &+= UInt64(target - trimmedPrefix)
            trimmedPrefix = target
        }
        lowWater = free.count
        // Buffers in use now may be free and idle by the next trim.
        if buffersInUse + free.count - trimmedPrefix > idleBuffersKept { scheduleTrim() }
    }

    /// Free buffers whose pages are resident (not trimmed).
    public var residentFreeBuffers: Int {
        hooks.isEmpty ? free.count - trimmedPrefix : free.count - unregisteredSlabs * buffersPerSlab
    }

    /// Bytes reserved from the budget (`Int.max` buffers' worth without one).
    var reservedBytes: Int { reservedBuffers == .max ? .max : reservedBuffers * bufferSize }

    /// Bytes of the slabs whose pages are resident now, as the kernel
    /// reports them (`mincore`): what the pool costs the process.
    func residentBytes() -> Int {
        let page = Int(sysconf(Int32(_SC_PAGESIZE)))
        var resident = 0
        for slab in slabs {
            var pages = [UInt8](repeating: 0, count: (slab.count + page - 1) / page)
            guard mincore(slab.baseAddress, slab.count, &pages) == 0 else { continue }
            resident += pages.reduce(0) { $0 + Int($1 & 1) } * page
        }
        return resident
    }

    /// Slabs whose memory a trim gave back (unregistered, pages returned).
    public var trimmedSlabCount: Int { unregisteredSlabs }

    /// The trim of a pool whose slabs are registered: a slab whose every
    /// buffer stayed free since the last trim, beyond the resident floor,
    /// is unregistered and its pages returned.
    private func trimRegisteredSlabs() {
        defer {
            lowWater = free.count
            if residentFreeBuffers + buffersInUse > idleBuffersKept { scheduleTrim() }
        }
        guard !pinnedForGood else { return }
        var idleBuffers = Array(repeating: 0, count: slabs.count)
        for index in 0..<min(lowWater, free.count) { idleBuffers[free[index].slabIndex] += 1 }
        var keep = idleBuffersKept
        for (index, slab) in slabs.enumerated() where slabRegistered[index] && idleBuffers[index] == buffersPerSlab {
            if keep >= buffersPerSlab {
                keep -= buffersPerSlab
                continue
            }
            for unregister in unregistrationHooks { unregister(index) }
            _ = madvise(slab.baseAddress, slab.count, MADV_DONTNEED)
            slabRegistered[index] = false
            unregisteredSlabs += 1
            buffersTrimmed &+= UInt64(buffersPerSlab)
        }
    }

    /// A buffer of a trimmed slab is in use again: the backends register
    /// the slab again before any I/O can name it.
    private func registerAgain(_ slabIndex: Int) {
        slabRegistered[slabIndex] = true
        unregisteredSlabs -= 1
        for hook in hooks { hook(slabs[slabIndex], slabIndex) }
        scheduleTrim()
    }

    private func scheduleTrim() {
        guard !trimScheduled, let trimScheduler else { return }
        trimScheduled = true
        trimScheduler()
    }

    @usableFromInline
    func recycle(_ buffer: Buffer) {
        if _slowPath(buffer.original != nil) {
            giveBack(borrowed: buffer)
            return
        }
        buffersInUse &-= 1
        free.append(buffer)
        if buffersInUse < releaseBelow { buffersFellBelowReservation() }
    }

    /// Use fell two chunks below what is reserved. While the budget has
    /// room, a chunk goes back at the next trim, and only if use stayed
    /// that low since the last one: use that swings across a chunk
    /// boundary (a hundred connections receiving in waves) would otherwise
    /// return a chunk and reserve it again, its pages trimmed and faulted
    /// back, thousands of times a second. A budget nearly spent gets the
    /// chunk back at once, for the pools that wait for it.
    private func buffersFellBelowReservation() {
        guard let budget, budget.bytesReserved > budget.limit / 4 * 3 else {
            scheduleTrim()
            return
        }
        returnToBudget()
    }

    private func mapSlab() throws(EvplError) {
        let length = bufferSize * buffersPerSlab
        let memory = SystemCalls.mapAnonymous(length)
        guard let memory, memory != MAP_FAILED else {
            throw EvplError.lastErrno("mmap", context: "buffer slab of \(length) bytes")
        }
        let slab = UnsafeMutableRawBufferPointer(start: memory, count: length)
        let slabIndex = slabs.count
        slabs.append(slab)
        slabRegistered.append(true)
        free.reserveCapacity(free.count + buffersPerSlab)
        everCreated.reserveCapacity(everCreated.count + buffersPerSlab)
        for index in stride(from: buffersPerSlab - 1, through: 0, by: -1) {
            let buffer = Buffer(baseAddress: memory + index * bufferSize, capacity: bufferSize, slabIndex: slabIndex, pool: self)
            free.append(buffer)
            everCreated.append(buffer)
        }
        for hook in hooks {
            hook(slab, slabIndex)
        }
        if slabs.count * buffersPerSlab > idleBuffersKept { scheduleTrim() }
    }
}

extension BufferPool {
    /// A buffer of this pool with one reference, showing `original`'s
    /// bytes: another loop's buffer, whose one reference the caller hands
    /// over and which goes back to `lender` when the borrowed buffer's
    /// last reference goes. Allocates only while the pool has fewer
    /// borrowed buffers than it ever needed at once.
    func borrow(_ original: Buffer, from lender: BufferReturns) -> Buffer {
        let buffer: Buffer
        if let reused = freeBorrowed.popLast() {
            buffer = reused
        } else {
            buffer = Buffer(baseAddress: original.baseAddress, capacity: original.capacity, slabIndex: .max, pool: self)
            everBorrowed.append(buffer)
        }
        buffer.lend(original, from: lender)
        buffer.referenceCount = 1
        return buffer
    }

    /// The last reference to a borrowed buffer went: the original goes
    /// back to its loop.
    private func giveBack(borrowed buffer: Buffer) {
        let original = buffer.original.unsafelyUnwrapped
        let lender = buffer.lender.unsafelyUnwrapped
        buffer.original = nil
        buffer.lender = nil
        freeBorrowed.append(buffer)
        lender.giveBack(original)
    }
}
