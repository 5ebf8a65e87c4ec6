import CEvplLinux
import CURing
#if canImport(Glibc)
import Glibc
#endif

/// The io_uring block engine: each request becomes one SQE on the loop's
/// ring, reaped with the network's completions: `READ_FIXED`/`WRITE_FIXED`
/// for one range of registered pool memory, `READV`/`WRITEV` otherwise,
/// `FSYNC` with `DATASYNC`, `FALLOCATE` for discard and write-zeroes.
///
/// Buffered requests go in with the iteration's single `io_uring_enter`
/// (page-cache hits complete inside it, so batching them is pure gain).
/// `O_DIRECT` requests go to the device at once: one held back to the end of
/// the iteration waits behind the whole batch, and a device fed bursts
/// answers in bursts (measured on virtio-blk, 4 KiB random reads at depth
/// 32: 76k IOPS batched, 90k submitted one by one, as fio does).
final class URingBlockDriver: BlockDriver {
    private unowned(unsafe) let device: BlockDevice
    private unowned(unsafe) let uring: URing
    private let fixed: URingFixedBuffers

    init(device: BlockDevice, uring: URing) {
        self.device = device
        self.uring = uring
        fixed = uring.fixedBuffers(for: device.loop.bufferPool)
    }

    /// The fixed-buffer slot for a request that reads or writes one range of
    /// registered pool memory directly (not through a bounce buffer).
    private func fixedSlot(_ request: BlockRequest) -> Int32? {
        guard request.vectorCount == 1, request.iovecs.count == 1, !request.usedBounce,
              let slot = fixed.slot(for: request.iovecs[0].buffer) else { return nil }
        device.loop.statistics.fixedBufferTransfers &+= 1
        return slot
    }

    override func start(_ request: BlockRequest) {
        let entry = uring.submissionEntry()
        let fd = device.fd
        switch request.operation {
        case .read:
            if let slot = fixedSlot(request) {
                io_uring_prep_read_fixed(entry, fd, request.vectors[0].iov_base, UInt32(request.remaining), request.position, slot)
            } else {
                io_uring_prep_readv(entry, fd, request.vectors, UInt32(request.vectorCount), request.position)
            }
        case .write:
            if let slot = fixedSlot(request) {
                io_uring_prep_write_fixed(entry, fd, request.vectors[0].iov_base, UInt32(request.remaining), request.position, slot)
            } else {
                io_uring_prep_writev(entry, fd, request.vectors, UInt32(request.vectorCount), request.position)
            }
        case .flush:
            io_uring_prep_fsync(entry, fd, IORING_FSYNC_DATASYNC)
        case .discard:
            io_uring_prep_fallocate(entry, fd, CEVPL_FALLOC_PUNCH_HOLE | CEVPL_FALLOC_KEEP_SIZE, off_t(request.offset), off_t(request.length))
        case .writeZeroes:
            io_uring_prep_fallocate(entry, fd, CEVPL_FALLOC_ZERO_RANGE | CEVPL_FALLOC_KEEP_SIZE, off_t(request.offset), off_t(request.length))
        }
        // The device owns its requests and outlives those in flight.
        entry.pointee.user_data = request.unretainedUserData(for: 1)
        if device.isDirect { uring.submitNow() }
    }

}
