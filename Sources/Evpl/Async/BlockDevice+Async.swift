extension BlockDevice {
    // Each async request rides in the device's recycled request object, its
    // continuation beside the caller's buffers, so awaiting one allocates
    // nothing. A request cannot be taken back from the kernel once it is
    // submitted: a task cancelled while awaiting one still waits for it, as
    // the kernel may be using the caller's buffers until then. A task that
    // is already cancelled submits nothing and gets `.cancelled`.

    /// Reads `iovec.length` bytes from `offset` into `iovec` (the caller
    /// keeps its reference) and returns the count. Call it from a task on
    /// the device's loop; many may be in flight at once (`async let`, task
    /// groups), up to ``queueDepth`` at the engine and the rest waiting in
    /// order.
    ///
    /// - Throws: ``EvplError``: the engine's error, `EIO` for a short read
    ///   (past the end of a file), `.cancelled` when the task was cancelled
    ///   before the request was submitted.
    nonisolated(nonsending) public func read(into iovec: IOVec, at offset: UInt64) async throws(EvplError) -> Int {
        try await perform(.read, offset: offset, length: iovec.length) { $0.take(iovec) }
    }

    /// Reads into `iovecs` in order (scatter; at most 64) from `offset` and
    /// returns the bytes read: their total length.
    nonisolated(nonsending) public func read(into iovecs: [IOVec], at offset: UInt64) async throws(EvplError) -> Int {
        try await perform(.read, offset: offset, length: iovecs.reduce(0) { $0 + $1.length }) { $0.take(iovecs) }
    }

    /// Writes `iovec` at `offset` (the caller keeps its reference) and
    /// returns the count once the engine reports it written (durable only
    /// after ``flush()``).
    nonisolated(nonsending) public func write(_ iovec: IOVec, at offset: UInt64) async throws(EvplError) -> Int {
        try await perform(.write, offset: offset, length: iovec.length) { $0.take(iovec) }
    }

    /// Writes `iovecs` in order (gather; at most 64) at `offset`.
    nonisolated(nonsending) public func write(_ iovecs: [IOVec], at offset: UInt64) async throws(EvplError) -> Int {
        try await perform(.write, offset: offset, length: iovecs.reduce(0) { $0 + $1.length }) { $0.take(iovecs) }
    }

    /// Makes every write completed before it durable (`fdatasync`).
    nonisolated(nonsending) public func flush() async throws(EvplError) {
        _ = try await perform(.flush, offset: 0, length: 0) { _ in }
    }

    /// Tells the device that `length` bytes at `offset` are unused; on a
    /// file they read back as zeros.
    nonisolated(nonsending) public func discard(at offset: UInt64, length: Int) async throws(EvplError) {
        _ = try await perform(.discard, offset: offset, length: length) { _ in }
    }

    /// Makes `length` bytes at `offset` read back as zeros.
    nonisolated(nonsending) public func writeZeroes(at offset: UInt64, length: Int) async throws(EvplError) {
        _ = try await perform(.writeZeroes, offset: offset, length: length) { _ in }
    }

    nonisolated(nonsending) private func perform(_ operation: BlockCompletion.Operation, offset: UInt64, length: Int,
                         buffers: (BlockRequest) -> Void) async throws(EvplError) -> Int {
        if Task.isCancelled {
            throw EvplError(.cancelled, operation: "block \(operation)", context: path)
        }
        let completion = await withUnsafeContinuation { continuation in
            submit(operation, offset: offset, length: length, tag: 0, continuation: continuation, buffers: buffers)
        }
        if let error = completion.error { throw error }
        return completion.bytes
    }
}

extension BlockDevice {
    /// A `Sendable` handle to this device, for child tasks (`async let`,
    /// task groups) and tasks on other executors: its calls run on the
    /// device's loop, hopping there first when made elsewhere.
    public var handle: BlockDeviceHandle {
        BlockDeviceHandle(device: self, executor: loop.executor)
    }
}

/// A `Sendable` reference to a ``BlockDevice`` through which any task may
/// submit requests and await them.
///
/// A call made on the device's loop thread (a child task of a task on the
/// loop inherits its executor preference) submits at once; a call from
/// elsewhere first moves to the loop with `withTaskExecutorPreference` and
/// returns to its own executor afterwards. Buffers passed in must come from
/// the device's loop's pool.
public struct BlockDeviceHandle: @unchecked Sendable {
    // Sendable because `device` is only touched on its loop's thread:
    // every method below reaches it through `onLoop`, which checks the
    // thread and otherwise hops to the loop's executor first.
    private let device: BlockDevice
    /// The executor of the device's loop.
    public let executor: EventLoopExecutor

    init(device: BlockDevice, executor: EventLoopExecutor) {
        self.device = device
        self.executor = executor
    }

    /// ``BlockDevice/read(into:at:)-(IOVec,_)`` on the device's loop.
    public func read(into iovec: IOVec, at offset: UInt64) async throws(EvplError) -> Int {
        try await onLoop { device throws(EvplError) in try await device.read(into: iovec, at: offset) }
    }

    /// ``BlockDevice/write(_:at:)-(IOVec,_)`` on the device's loop.
    public func write(_ iovec: IOVec, at offset: UInt64) async throws(EvplError) -> Int {
        try await onLoop { device throws(EvplError) in try await device.write(iovec, at: offset) }
    }

    /// ``BlockDevice/flush()`` on the device's loop.
    public func flush() async throws(EvplError) {
        try await onLoop { device throws(EvplError) in try await device.flush() }
    }

    /// ``BlockDevice/discard(at:length:)`` on the device's loop.
    public func discard(at offset: UInt64, length: Int) async throws(EvplError) {
        try await onLoop { device throws(EvplError) in try await device.discard(at: offset, length: length) }
    }

    private func onLoop<T: Sendable>(_ body: (BlockDevice) async throws(EvplError) -> T) async throws(EvplError) -> T {
        if executor.isLoopThread { return try await body(device) }
        let result: Result<T, EvplError> = await withTaskExecutorPreference(executor) {
            do throws(EvplError) {
                return .success(try await body(device))
            } catch {
                return .failure(error)
            }
        }
        return try result.get()
    }
}
