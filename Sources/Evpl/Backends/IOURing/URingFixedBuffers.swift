import CURing
#if canImport(Glibc)
import Glibc
#endif

/// The loop's buffer-pool slabs registered with its ring as fixed buffers,
/// one table slot per slab (slot = slab index), through the pool's
/// registration hook: each slab is pinned once, when it is mapped (and again
/// if a trim unpinned it to return its pages), and block
/// reads and writes into pool memory use `READ_FIXED`/`WRITE_FIXED`, which
/// skip pinning the pages on every I/O.
///
/// Made on the first io_uring block device of a loop, so network-only loops
/// pin nothing. If the kernel refuses the registration (a low
/// `RLIMIT_MEMLOCK`), block I/O falls back to `READV`/`WRITEV`.
final class URingFixedBuffers {
    /// Slabs beyond this many are not registered (their I/O uses READV/WRITEV).
    static let tableSize = 1024

    private unowned(unsafe) let uring: URing
    @exclusivity(unchecked) private var registered: [Bool]
    private(set) var isEnabled: Bool

    init(uring: URing, pool: BufferPool) {
        self.uring = uring
        registered = Array(repeating: false, count: Self.tableSize)
        isEnabled = io_uring_register_buffers_sparse(uring.ring, UInt32(Self.tableSize)) == 0
        guard isEnabled else { return }
        pool.addRegistrationHook({ [weak self] slab, index in
            self?.register(slab, at: index)
        }, unregister: { [weak self] index in
            self?.unregister(at: index)
        })
    }

    /// Empties the slab's slot: the kernel drops its pin on the pages (I/O
    /// in flight on them keeps it until it completes; a trimmed slab has none).
    private func unregister(at index: Int) {
        guard isEnabled, index < Self.tableSize, registered[index] else { return }
        var vector = iovec(iov_base: nil, iov_len: 0)
        var tag: UInt64 = 0
        _ = io_uring_register_buffers_update_tag(uring.ring, UInt32(index), &vector, &tag, 1)
        registered[index] = false
    }

    private func register(_ slab: UnsafeMutableRawBufferPointer, at index: Int) {
        guard isEnabled, index < Self.tableSize else { return }
        var vector = iovec(iov_base: slab.baseAddress, iov_len: slab.count)
        var tag: UInt64 = 0
        registered[index] = io_uring_register_buffers_update_tag(uring.ring, UInt32(index), &vector, &tag, 1) == 1
    }

    /// The fixed-buffer slot covering `buffer`, or `nil` when its slab is not registered.
    @inline(__always)
    func slot(for buffer: Buffer) -> Int32? {
        let index = buffer.slabIndex
        return index < Self.tableSize && registered[index] ? Int32(index) : nil
    }
}

extension URing {
    /// The fixed-buffer registration of the loop's pool, made on first use.
    func fixedBuffers(for pool: BufferPool) -> URingFixedBuffers {
        if let fixed = fixedBufferTable { return fixed }
        let fixed = URingFixedBuffers(uring: self, pool: pool)
        fixedBufferTable = fixed
        return fixed
    }
}
