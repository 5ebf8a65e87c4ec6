import CEvplLinux
#if canImport(Glibc)
import Glibc
import Logging
#endif

extension EventLoop {
    /// Opens a file or block device on this loop.
    ///
    /// - Parameters:
    ///   - location: a path (`/path/file`, `/dev/...`), used as written, or a
    ///     `file:///absolute/path` URI (`localhost` as host allowed, `%XX`
    ///     escapes decoded).
    ///   - engine: how requests run; io_uring by default.
    ///   - direct: open with `O_DIRECT` (unaligned buffers then go through a
    ///     bounce buffer; offsets and lengths must be 4 KiB multiples).
    ///   - size: with `create:`, the bytes a regular file must hold: a missing
    ///     file is created (sparse) and a shorter one extended.
    ///   - queueDepth: requests in flight at most.
    /// - Throws: ``EvplError`` naming the path when it is missing or cannot be
    ///   opened, `.unavailable` for an engine this machine or build lacks
    ///   (VFIO-NVMe, NVMe passthrough, libaio), `.invalidArgument` for an empty path, a NUL byte, another
    ///   scheme, a remote host or a bad `%` escape.
    public func openBlockDevice(
        _ location: String,
        engine: BlockEngine = .ioUring,
        direct: Bool = false,
        create size: UInt64? = nil,
        queueDepth: Int = 128
    ) throws(EvplError) -> BlockDevice {
        checkLoopThread()
        let path = try BlockLocation.path(from: location)
        guard queueDepth > 0 else {
            throw EvplError(.invalidArgument, operation: "open block device", context: "queue depth \(queueDepth)")
        }
        if let size, size > UInt64(Int64.max) {
            throw EvplError(.invalidArgument, operation: "open block device", context: "\(path): size \(size) is past the largest file offset")
        }
        if let reason = Self.refusal(of: engine) {
            throw EvplError(.unavailable, operation: "open block device", context: "\(path): \(engine.rawValue): \(reason)")
        }
        var flags = O_RDWR | O_CLOEXEC
        if direct { flags |= CEVPL_O_DIRECT }
        if size != nil { flags |= O_CREAT }
        let fd = SystemCalls.open(path, flags, 0o644)
        guard fd >= 0 else { throw EvplError.lastErrno("open", context: path) }
        if let size {
            var status = stat()
            if fstat(fd, &status) == 0, status.st_mode & S_IFMT == S_IFREG, UInt64(status.st_size) < size, ftruncate(fd, off_t(size)) != 0 {
                let error = EvplError.lastErrno("ftruncate", context: path)
                SystemCalls.close(fd)
                throw error
            }
        }
        // The device owns `fd` from here, and closes it even when it fails to open.
        let device = try BlockDevice(loop: self, path: path, fd: fd, engine: engine, direct: direct, queueDepth: queueDepth)
        logger.debug("block device open", metadata: ["path": "\(path)", "engine": "\(engine)", "direct": "\(direct)", "depth": "\(queueDepth)"])
        return device
    }

    /// Makes a block device of a descriptor the caller opened: read-only,
    /// beneath a directory, or with flags ``openBlockDevice(_:engine:direct:create:queueDepth:)``
    /// does not offer. The device owns `fd` from the call on, and closes it
    /// even when this throws.
    ///
    /// - Parameters:
    ///   - fd: an open file or block device; reads and writes fail as the
    ///     descriptor's own mode says (`EBADF` writing to a read-only one).
    ///   - name: what the device's ``BlockDevice/path`` and its errors call it.
    ///   - engine: how requests run; io_uring by default.
    ///   - direct: whether `fd` was opened with `O_DIRECT` (offsets and
    ///     lengths must then be 4 KiB multiples).
    ///   - queueDepth: requests in flight at most.
    /// - Throws: ``EvplError`` `.unavailable` for an engine this machine or
    ///   build lacks, `.invalidArgument` for a negative descriptor or depth.
    public func openBlockDevice(
        adopting fd: Int32,
        name: String,
        engine: BlockEngine = .ioUring,
        direct: Bool = false,
        queueDepth: Int = 128
    ) throws(EvplError) -> BlockDevice {
        checkLoopThread()
        guard fd >= 0 else {
            throw EvplError(.invalidArgument, operation: "open block device", context: "\(name): descriptor \(fd)")
        }
        guard queueDepth > 0 else {
            SystemCalls.close(fd)
            throw EvplError(.invalidArgument, operation: "open block device", context: "queue depth \(queueDepth)")
        }
        if let reason = Self.refusal(of: engine) {
            SystemCalls.close(fd)
            throw EvplError(.unavailable, operation: "open block device", context: "\(name): \(engine.rawValue): \(reason)")
        }
        return try BlockDevice(loop: self, path: name, fd: fd, engine: engine, direct: direct, queueDepth: queueDepth)
    }

    /// Why `engine` cannot open a device here, or `nil` when it can.
    private static func refusal(of engine: BlockEngine) -> String? {
        switch engine {
        case .ioUring, .libaio, .psync, .null:
            return engine.unavailableReason
        case .vfioNVMe, .nvmePassthrough:
            return engine.unavailableReason ?? "not implemented in this build"
        }
    }
}
