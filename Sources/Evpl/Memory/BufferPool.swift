#if canImport(Glibc)
import Glibc
#endif

/// A pool of fixed-size buffers carved from large `mmap`ed slabs.
///
/// Slabs are mapped on demand and never unmapped while the pool lives, so a
/// backend that must register memory (io_uring fixed buffers, RDMA memory
/// regions) registers each slab exactly once, through a registration hook,
/// and never per I/O. One pool belongs to one event loop; it takes no locks.
public final class BufferPool {
    /// Called once for each slab, existing and future, with its whole memory.
    public typealias RegistrationHook = (_ slab: UnsafeMutableRawBufferPointer, _ slabIndex: Int) -> Void

    /// Bytes per buffer.
    public let bufferSize: Int
    /// Buffers per slab.
    public let buffersPerSlab: Int
    private var slabs: [UnsafeMutableRawBufferPointer] = []
    @exclusivity(unchecked) private var free: [Buffer] = []
    private var hooks: [RegistrationHook] = []
    private var everCreated: [Buffer] = []

    /// Number of buffers currently referenced (handed out and not yet released).
    @exclusivity(unchecked) public private(set) var buffersInUse: Int = 0
    /// Of ``buffersInUse``, the buffers a backend has lent to the kernel to
    /// receive into (io_uring provided buffers): referenced by design, not
    /// leaked. `buffersInUse - buffersLentToKernel` is what the application
    /// and the connections hold.
    public internal(set) var buffersLentToKernel: Int = 0

    /// Creates an empty pool; the first slab is mapped on the first allocation.
    public init(bufferSize: Int, buffersPerSlab: Int) {
        precondition(bufferSize > 0 && buffersPerSlab > 0)
        self.bufferSize = bufferSize
        self.buffersPerSlab = buffersPerSlab
    }

    deinit {
        for slab in slabs {
            munmap(slab.baseAddress, slab.count)
        }
    }

    /// Number of slabs mapped so far.
    public var slabCount: Int { slabs.count }

    /// Adds a hook that registers slab memory with a backend. It runs at once
    /// for every slab already mapped, then for each new slab when it is mapped.
    public func addRegistrationHook(_ hook: @escaping RegistrationHook) {
        hooks.append(hook)
        for (index, slab) in slabs.enumerated() {
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

    @usableFromInline
    func take() throws(EvplError) -> Buffer {
        if free.isEmpty {
            try mapSlab()
        }
        let buffer = free.removeLast()
        buffer.referenceCount = 1
        buffersInUse &+= 1
        return buffer
    }

    @usableFromInline
    func recycle(_ buffer: Buffer) {
        buffersInUse &-= 1
        free.append(buffer)
    }

    private func mapSlab() throws(EvplError) {
        let length = bufferSize * buffersPerSlab
        let memory = mmap(nil, length, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0)
        guard let memory, memory != MAP_FAILED else {
            throw EvplError.lastErrno("mmap", context: "buffer slab of \(length) bytes")
        }
        let slab = UnsafeMutableRawBufferPointer(start: memory, count: length)
        let slabIndex = slabs.count
        slabs.append(slab)
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
    }
}
