/// How a ``BlockDevice`` moves data between pool buffers and storage.
public enum BlockEngine: String, Sendable, Hashable, CaseIterable, CustomStringConvertible {
    /// The loop's io_uring: `READ_FIXED`/`WRITE_FIXED` on registered pool
    /// memory, `READV`/`WRITEV` otherwise, `FSYNC`, `FALLOCATE`; completions
    /// reaped with the network's.
    case ioUring = "io_uring"
    /// Linux native AIO (asynchronous with `O_DIRECT`; on buffered files the
    /// kernel does the I/O inside `io_submit`).
    case libaio
    /// `preadv`/`pwritev` on a small thread pool; completions come back to the
    /// loop through its remote queue. Works everywhere.
    case psync
    /// Completes every request at once without touching storage: measures the
    /// engine's own overhead, like fio's null engine.
    case null
    /// A user-space NVMe driver over VFIO (needs an NVMe SSD bound to vfio-pci).
    case vfioNVMe = "vfio-nvme"
    /// NVMe passthrough commands (`URING_CMD`) on a `/dev/ng*` character device.
    case nvmePassthrough = "nvme-passthrough"

    /// The name the command line and ``Probe`` use (`io_uring`, `vfio-nvme`).
    public var description: String { rawValue }

    /// Why the engine cannot be used here, or `nil` when it can.
    public var unavailableReason: String? {
        switch self {
        case .ioUring:
            return Probe.unavailableReason(for: .ioUring)
        case .psync, .null, .libaio:
            return nil
        case .vfioNVMe:
            return Probe.vfioReason()
        case .nvmePassthrough:
            return Probe.nvmePassthroughReason()
        }
    }
}

/// One finished block request, as the device's handler sees it.
public struct BlockCompletion: Sendable {
    /// What the request did.
    public enum Operation: Sendable, Hashable {
        /// A `BlockDevice.read(into:at:tag:)`.
        case read
        /// A `BlockDevice.write(_:at:tag:)`.
        case write
        /// ``BlockDevice/flush(tag:)``: data written before it is durable.
        case flush
        /// ``BlockDevice/discard(at:length:tag:)``: the range reads back as zeros.
        case discard
        /// ``BlockDevice/writeZeroes(at:length:tag:)``.
        case writeZeroes
    }

    /// The tag the request was submitted with.
    public var tag: UInt64
    /// The request's operation.
    public var operation: Operation
    /// Bytes transferred (reads and writes), or 0.
    public var bytes: Int
    /// Why the request failed, or `nil` on success. A short transfer (for
    /// example a read past the end) is a failure with `EIO`, never a success.
    public var error: EvplError?
}
