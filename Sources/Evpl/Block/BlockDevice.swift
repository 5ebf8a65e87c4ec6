#if canImport(Glibc)
import Glibc
#endif
import Synchronization

/// A file or block device opened on one loop with one engine.
///
/// Reads and writes take pool IOVecs (scatter-gather) at a byte offset;
/// flush, discard and write-zeroes complete like them. Every completion
/// reaches ``handler`` on the loop's thread with the tag it was submitted
/// with. More requests than ``queueDepth`` wait in order inside the device,
/// never rejected. Request objects are recycled, so steady-state I/O
/// allocates nothing.
public final class BlockDevice {
    /// Receives every completion.
    public typealias Handler = (BlockDevice, BlockCompletion) -> Void

    /// The loop the device lives on.
    public unowned let loop: EventLoop
    /// The path it was opened from.
    public let path: String
    /// The engine moving its data.
    public let engine: BlockEngine
    /// Whether the device was opened with `O_DIRECT`.
    public let isDirect: Bool
    /// Requests in flight at most; more wait in the device.
    public let queueDepth: Int
    /// The most IOVecs one read or write may carry (64); a request with
    /// more completes with `.invalidArgument`. A longer range takes several
    /// requests.
    public static let maxIOVecsPerRequest = BlockRequest.maxVectors
    /// Receives every completion; set it before submitting.
    @exclusivity(unchecked) public var handler: Handler = { _, _ in }

    let fd: Int32
    /// Memory and offset alignment `O_DIRECT` needs (1 otherwise).
    let alignment: Int
    /// The engine's driver; the device owns it.
    private var driverStorage: BlockDriver?
    /// The same driver, reached without reference counting on the hot path.
    @exclusivity(unchecked) private var driver: Unmanaged<BlockDriver>!
    /// ``loop``, reached without reference counting on the hot path (a
    /// loop outlives the devices opened on it).
    private let eventLoop: Unmanaged<EventLoop>
    @exclusivity(unchecked) private var inFlight = 0
    @exclusivity(unchecked) private var waiting: [Unmanaged<BlockRequest>] = []
    @exclusivity(unchecked) private var waitingHead = 0
    /// Every request the device has made: it owns them, so that engines
    /// and the spare list reach them without reference counting.
    private var requests: [BlockRequest] = []
    /// Requests free for the next submission.
    @exclusivity(unchecked) private var spare: [Unmanaged<BlockRequest>] = []
    @exclusivity(unchecked) private(set) var isClosed = false
    /// The device's reference on itself while requests are in flight, so
    /// that each request reaches it without reference counting: taken when
    /// the first starts, dropped by `letGo` at the end of an iteration that
    /// leaves none in flight (never inside a call that reached the device).
    @exclusivity(unchecked) private var keptAlive: Unmanaged<BlockDevice>?
    private var letGo: Deferral!
    private var descriptorClosed = false

    /// For the psync engine, how often its workers went to sleep and how
    /// long they spun without finding a job; `nil` for the other engines.
    var psyncWorkerWaits: (sleeps: Int, wastedSpinNanoseconds: UInt64)? {
        guard let psync = driverStorage as? PSyncBlockDriver else { return nil }
        return (psync.shared.workerSleeps.load(ordering: .relaxed), psync.shared.wastedSpinNanoseconds.load(ordering: .relaxed))
    }

    /// Takes ownership of `fd`: every stored property is set before the
    /// first throw, so `deinit` closes it on failure too.
    init(loop: EventLoop, path: String, fd: Int32, engine: BlockEngine, direct: Bool, queueDepth: Int) throws(EvplError) {
        self.loop = loop
        self.eventLoop = Unmanaged.passUnretained(loop)
        self.path = path
        self.fd = fd
        self.engine = engine
        self.isDirect = direct
        self.queueDepth = queueDepth
        self.alignment = direct ? 4096 : 1
        switch engine {
        case .ioUring:
            driverStorage = URingBlockDriver(device: self, uring: try loop.ioURing())
        case .psync:
            driverStorage = try PSyncBlockDriver(device: self, loop: loop)
        case .null:
            driverStorage = NullBlockDriver(device: self, loop: loop)
        case .libaio:
            driverStorage = try LibAIOBlockDriver(device: self, loop: loop, depth: queueDepth)
        case .vfioNVMe, .nvmePassthrough:
            preconditionFailure("openBlockDevice refuses \(engine.rawValue) before it opens anything")
        }
        driver = Unmanaged.passUnretained(driverStorage!)
        letGo = loop.makeDeferral { [unowned(unsafe) self] _ in releaseIfIdle() }
        letGo.runsWhenLoopEnds = true
    }

    deinit {
        if !descriptorClosed { SystemCalls.close(fd) }
    }

    /// The size in bytes (of a file: its length now).
    public var size: UInt64 {
        var status = stat()
        guard fstat(fd, &status) == 0 else { return 0 }
        if status.st_mode & S_IFMT == S_IFBLK {
            var bytes: UInt64 = 0
            _ = ioctl(fd, 0x8008_1272, &bytes)  // BLKGETSIZE64
            return bytes
        }
        return UInt64(status.st_size)
    }

    /// Requests submitted and not yet completed.
    public var pendingRequests: Int { inFlight + waiting.count - waitingHead }
    /// Requests handed to the engine and not yet complete: never more than
    /// ``queueDepth``.
    public var requestsAtEngine: Int { inFlight }

    /// Reads into `iovecs` (scatter; the caller keeps its references) from `offset`.
    public func read(into iovecs: [IOVec], at offset: UInt64, tag: UInt64) {
        submit(.read, offset: offset, length: iovecs.reduce(0) { $0 + $1.length }, tag: tag) { $0.take(iovecs) }
    }

    /// Reads into one IOVec (the caller keeps its reference) from `offset`.
    public func read(into iovec: IOVec, at offset: UInt64, tag: UInt64) {
        submit(.read, offset: offset, length: iovec.length, tag: tag) { $0.take(iovec) }
    }

    /// Writes `iovecs` (gather; the caller keeps its references) at `offset`.
    public func write(_ iovecs: [IOVec], at offset: UInt64, tag: UInt64) {
        submit(.write, offset: offset, length: iovecs.reduce(0) { $0 + $1.length }, tag: tag) { $0.take(iovecs) }
    }

    /// Writes one IOVec (the caller keeps its reference) at `offset`.
    public func write(_ iovec: IOVec, at offset: UInt64, tag: UInt64) {
        submit(.write, offset: offset, length: iovec.length, tag: tag) { $0.take(iovec) }
    }

    /// Makes completed writes durable (`fdatasync`).
    public func flush(tag: UInt64) {
        submit(.flush, offset: 0, length: 0, tag: tag) { _ in }
    }

    /// Tells the device `length` bytes at `offset` are unused (advisory; they
    /// read back as zeros on a file).
    public func discard(at offset: UInt64, length: Int, tag: UInt64) {
        submit(.discard, offset: offset, length: length, tag: tag) { _ in }
    }

    /// Makes `length` bytes at `offset` read back as zeros.
    public func writeZeroes(at offset: UInt64, length: Int, tag: UInt64) {
        submit(.writeZeroes, offset: offset, length: length, tag: tag) { _ in }
    }

    /// Closes the device once its requests have finished; later submissions
    /// complete with `.invalidState`.
    public func close() {
        guard !isClosed else { return }
        isClosed = true
        driverStorage?.shutdown()
        closeDescriptorIfIdle()
    }

    private func closeDescriptorIfIdle() {
        guard isClosed, !descriptorClosed, pendingRequests == 0 else { return }
        descriptorClosed = true
        SystemCalls.close(fd)
    }

    // MARK: Queue

    func submit(_ operation: BlockCompletion.Operation, offset: UInt64, length: Int, tag: UInt64,
                continuation: UnsafeContinuation<BlockCompletion, Never>? = nil, buffers: (BlockRequest) -> Void) {
        eventLoop._withUnsafeGuaranteedRef { $0.checkLoopThread() }
        (spare.popLast() ?? makeRequest())._withUnsafeGuaranteedRef { request in
            submit(request, operation, offset: offset, length: length, tag: tag, continuation: continuation, buffers: buffers)
        }
    }

    /// A new request, owned by the device from now on.
    private func makeRequest() -> Unmanaged<BlockRequest> {
        let request = BlockRequest()
        requests.append(request)
        return Unmanaged.passUnretained(request)
    }

    @inline(__always)
    private func submit(_ request: BlockRequest, _ operation: BlockCompletion.Operation, offset: UInt64, length: Int, tag: UInt64,
                        continuation: UnsafeContinuation<BlockCompletion, Never>?, buffers: (BlockRequest) -> Void) {
        request.continuation = continuation
        request.operation = operation
        request.offset = offset
        request.length = length
        request.tag = tag
        request.transferred = 0
        request.retries = 0
        eventLoop._withUnsafeGuaranteedRef { $0.blockRequestsPending &+= 1 }
        buffers(request)
        if let error = validate(request) {
            fail(request, error)
            return
        }
        if inFlight < queueDepth {
            start(request)
        } else {
            waiting.append(Unmanaged.passUnretained(request))
        }
    }

    private func validate(_ request: BlockRequest) -> EvplError? {
        if isClosed {
            return EvplError(.invalidState, operation: "block \(request.operation)", context: "\(path) is closed")
        }
        if request.iovecs.count > BlockRequest.maxVectors {
            return EvplError(.invalidArgument, operation: "block \(request.operation)", context: "\(request.iovecs.count) IOVecs (at most \(BlockRequest.maxVectors))")
        }
        if request.offset > UInt64(Int64.max) - UInt64(request.length) {
            return EvplError(errno: EINVAL, operation: "block \(request.operation)", context: "\(path): offset \(request.offset) + length \(request.length) is past the largest file offset")
        }
        if (request.operation == .read || request.operation == .write) && request.length == 0 {
            return EvplError(.invalidArgument, operation: "block \(request.operation)", context: "\(path): empty transfer")
        }
        if isDirect && (request.offset % UInt64(alignment) != 0 || request.length % alignment != 0) {
            return EvplError(errno: EINVAL, operation: "block \(request.operation)", context: "\(path): O_DIRECT needs offset and length in multiples of \(alignment) bytes (offset \(request.offset), length \(request.length))")
        }
        return nil
    }

    private func start(_ request: BlockRequest) {
        if request.operation == .read || request.operation == .write {
            guard request.prepareVectors(alignment: alignment) else {
                fail(request, EvplError(errno: ENOMEM, operation: "block \(request.operation)", context: "\(path): bounce buffer of \(request.length) bytes"))
                return
            }
        }
        beginInFlight(request)
        driver._withUnsafeGuaranteedRef { $0.start(request) }
    }

    /// Counts `request` in flight, and keeps the device alive while any is.
    @inline(__always)
    private func beginInFlight(_ request: BlockRequest) {
        if keptAlive == nil { keptAlive = Unmanaged.passRetained(self) }
        inFlight += 1
        request.device = self
    }

    /// Once nothing is in flight, has the device's reference on itself
    /// dropped at the end of the iteration.
    @inline(__always)
    private func endInFlightIfIdle() {
        if inFlight == 0 && keptAlive != nil { letGo.arm() }
    }

    /// Drops the device's reference on itself if nothing is in flight. The
    /// device may be gone when this returns.
    private func releaseIfIdle() {
        guard inFlight == 0, let keptAlive else { return }
        self.keptAlive = nil
        keptAlive.release()
    }

    /// A request failed before it reached the engine: complete it at the
    /// end of the iteration, like any other.
    private func fail(_ request: BlockRequest, _ error: EvplError) {
        beginInFlight(request)
        loop.makeDeferral { [self] _ in finish(request, result: -Int(error.errno == 0 ? EINVAL : error.errno), error: error) }.arm()
    }

    /// Called by engines on the loop: `result` is bytes transferred or a negative errno.
    func finish(_ request: BlockRequest, result: Int, error presetError: EvplError? = nil) {
        if presetError == nil && continues(request, after: result) { return }
        request.device = nil
        inFlight -= 1
        var error = presetError
        var bytes = 0
        if error == nil {
            if result < 0 {
                error = EvplError(errno: Int32(-result), operation: "block \(request.operation)", context: "\(path) at \(request.offset)")
            } else if request.isTransfer && result != request.remaining {
                error = EvplError(errno: EIO, operation: "block \(request.operation)", context: "\(path): short transfer of \(request.transferred + result) of \(request.length) bytes at \(request.offset)")
            } else {
                bytes = request.transferred + result
                if request.operation == .read && request.usedBounce { request.copyBounceOut(bytes) }
            }
        }
        let completion = BlockCompletion(tag: request.tag, operation: request.operation, bytes: bytes, error: error)
        eventLoop._withUnsafeGuaranteedRef { $0.blockRequestsPending &-= 1 }
        while let iovec = request.iovecs.popLast() { iovec.release() }
        let continuation = request.continuation
        request.continuation = nil
        spare.append(Unmanaged.passUnretained(request))
        startWaiting()
        if let continuation {
            continuation.resume(returning: completion)
        } else {
            handler(self, completion)
        }
        closeDescriptorIfIdle()
        endInFlightIfIdle()
    }

    /// A request whose ring went away with the loop before it completed:
    /// lets go of what it held, without a completion.
    func abandon(_ request: BlockRequest) {
        request.device = nil
        inFlight -= 1
        eventLoop._withUnsafeGuaranteedRef { $0.blockRequestsPending &-= 1 }
        while let iovec = request.iovecs.popLast() { iovec.release() }
        request.continuation = nil
        // The loop is going away: no deferral will run.
        releaseIfIdle()
    }

    /// Attempts in a row that may end in `EINTR` or `EAGAIN` before the
    /// error reaches the handler.
    static let retriesWithoutProgress = 8

    /// Starts the rest of a read or write the kernel did in part (the next
    /// attempt makes no progress at the end of a file, and then fails), or
    /// the same one again after `EINTR` or `EAGAIN`. Returns whether it did.
    private func continues(_ request: BlockRequest, after result: Int) -> Bool {
        guard request.isTransfer else { return false }
        if result == -Int(EINTR) || result == -Int(EAGAIN) {
            guard request.retries < Self.retriesWithoutProgress else { return false }
            request.retries += 1
        } else if result > 0 && result < request.remaining && (request.transferred + result) % alignment == 0 {
            request.transferred += result
            request.retries = 0
        } else {
            return false
        }
        guard request.prepareVectors(alignment: alignment) else { return false }
        eventLoop._withUnsafeGuaranteedRef { $0.statistics.blockTransfersContinued &+= 1 }
        driver._withUnsafeGuaranteedRef { $0.start(request) }
        return true
    }

    private func startWaiting() {
        while inFlight < queueDepth && waitingHead < waiting.count {
            let next = waiting[waitingHead]
            waitingHead += 1
            next._withUnsafeGuaranteedRef { start($0) }
        }
        if waitingHead == waiting.count {
            waiting.removeAllKeepingCapacity()
            waitingHead = 0
        }
    }
}
