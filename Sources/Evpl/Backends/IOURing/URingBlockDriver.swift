import CEvplLinux
import CURing
#if canImport(Glibc)
import Glibc
#endif

/// The io_uring block engine: each request becomes one SQE on the loop's
/// ring (`READV`, `WRITEV`, `FSYNC` with `DATASYNC`, `FALLOCATE`), submitted
/// with the iteration's single `io_uring_enter` and reaped with the
/// network's completions.
final class URingBlockDriver: BlockDriver {
    private unowned(unsafe) let device: BlockDevice
    private unowned(unsafe) let uring: URing

    init(device: BlockDevice, uring: URing) {
        self.device = device
        self.uring = uring
    }

    func start(_ request: BlockRequest) {
        let entry = uring.submissionEntry()
        let fd = device.fd
        switch request.operation {
        case .read:
            io_uring_prep_readv(entry, fd, request.vectors, UInt32(request.vectorCount), request.offset)
        case .write:
            io_uring_prep_writev(entry, fd, request.vectors, UInt32(request.vectorCount), request.offset)
        case .flush:
            io_uring_prep_fsync(entry, fd, IORING_FSYNC_DATASYNC)
        case .discard:
            io_uring_prep_fallocate(entry, fd, CEVPL_FALLOC_PUNCH_HOLE | CEVPL_FALLOC_KEEP_SIZE, off_t(request.offset), off_t(request.length))
        case .writeZeroes:
            io_uring_prep_fallocate(entry, fd, CEVPL_FALLOC_ZERO_RANGE | CEVPL_FALLOC_KEEP_SIZE, off_t(request.offset), off_t(request.length))
        }
        entry.pointee.user_data = request.userData(for: 1)
    }

    func shutdown() {}
}
