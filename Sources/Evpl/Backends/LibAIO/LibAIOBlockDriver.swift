import CEvplLinux
import CLibAIO
#if canImport(Glibc)
import Glibc
#endif

/// The libaio block engine: Linux native AIO. Buffered requests queued
/// during an iteration go in with one `io_submit`; `O_DIRECT` ones are
/// submitted at once, for the reason ``URingBlockDriver`` gives.
/// Completions are read straight from the AIO completion ring the kernel
/// maps into the process (no syscall), right after submitting (buffered
/// I/O completes inside `io_submit`) and whenever the eventfd the loop
/// watches reports more.
/// Native AIO is asynchronous only with `O_DIRECT`; on buffered files
/// `io_submit` does the I/O itself. AIO has no discard or write-zeroes, so
/// those run as `fallocate` on the loop and complete at the end of the
/// iteration.
final class LibAIOBlockDriver: BlockDriver {
    private unowned(unsafe) let device: BlockDevice
    private var context: io_context_t?
    private let eventFD: Int32
    private var watch: FDWatch!
    private var submitDeferral: Deferral!
    /// Discard and write-zeroes, run as fallocate on the loop.
    private var inline: DeferredCompletions!
    @exclusivity(unchecked) private var queued: [UnsafeMutablePointer<iocb>?] = []
    private let events: UnsafeMutablePointer<io_event>
    private let eventCapacity: Int
    private var inFlight = 0
    private var closing = false
    private var released = false
    /// Control blocks not in flight; a completion's event names its block
    /// (`obj`), which goes back here, so none is looked up per I/O.
    @exclusivity(unchecked) private var spareBlocks: [UnsafeMutablePointer<iocb>] = []
    /// Every control block made, freed with the driver.
    private var allBlocks: [UnsafeMutablePointer<iocb>] = []

    init(device: BlockDevice, loop: EventLoop, depth: Int) throws(EvplError) {
        self.device = device
        eventCapacity = depth
        var created: io_context_t?
        let status = SystemCalls.ioSetup(Int32(depth), &created)
        guard status == 0, let created else {
            throw EvplError(errno: -status, operation: "io_setup", context: "\(device.path): depth \(depth)")
        }
        context = created
        eventFD = SystemCalls.eventfd(0, Int32(EFD_CLOEXEC | EFD_NONBLOCK))
        guard eventFD >= 0 else {
            let error = EvplError.lastErrno("eventfd", context: "libaio")
            io_destroy(created)
            throw error
        }
        events = .allocate(capacity: depth)
        super.init()
        // Fully initialized from here on: a throw runs `deinit`, which releases everything.
        watch = try loop.watch(fd: eventFD, interest: .readable) { [unowned(unsafe) self] _, _ in reap() }
        submitDeferral = loop.makeDeferral { [unowned(unsafe) self] _ in submitQueued() }
        inline = DeferredCompletions(device: device, loop: loop)
        inline.afterBatch = { [unowned(unsafe) self] in releaseIfDone() }
    }

    deinit {
        release()
        events.deallocate()
        for block in allBlocks { block.deallocate() }
    }

    override func start(_ request: BlockRequest) {
        switch request.operation {
        case .discard, .writeZeroes:
            let mode = request.operation == .discard ? CEVPL_FALLOC_PUNCH_HOLE : CEVPL_FALLOC_ZERO_RANGE
            let status = cevpl_fallocate(device.fd, mode | CEVPL_FALLOC_KEEP_SIZE, Int64(request.offset), Int64(request.length))
            inline.add(request, result: status == 0 ? 0 : -Int(Glibc.errno))
            return
        case .read, .write, .flush:
            break
        }
        let block = takeControlBlock()
        switch request.operation {
        case .read:
            io_prep_preadv(block, device.fd, request.vectors, Int32(request.vectorCount), Int64(request.position))
        case .write:
            io_prep_pwritev(block, device.fd, request.vectors, Int32(request.vectorCount), Int64(request.position))
        default:
            io_prep_fdsync(block, device.fd)
        }
        io_set_eventfd(block, eventFD)
        // The device owns its requests and outlives those in flight.
        block.pointee.data = Unmanaged.passUnretained(request).toOpaque()
        inFlight += 1
        queued.append(block)
        if device.isDirect, let context {
            // Straight to the device; what it does not take waits for the deferred submit.
            _ = pushQueued(context)
            if queued.isEmpty { return }
        }
        submitDeferral.arm()
    }

    private func takeControlBlock() -> UnsafeMutablePointer<iocb> {
        if let block = spareBlocks.popLast() { return block }
        let block = UnsafeMutablePointer<iocb>.allocate(capacity: 1)
        block.initialize(to: iocb())
        allBlocks.append(block)
        return block
    }

    /// One `io_submit` for everything queued this iteration; what the kernel
    /// could not take yet is retried next iteration, and a rejected request
    /// completes with the error.
    private func submitQueued() {
        guard let context, !queued.isEmpty else { return }
        let submitted = pushQueued(context)
        if queued.isEmpty {
            collect()
            return
        }
        if submitted >= 0 || submitted == -EAGAIN {
            // Taken in part or not at all: the rest next iteration.
        } else {
            // The first request is refused: complete it with the error.
            let block = queued.removeFirst()!
            spareBlocks.append(block)
            inFlight -= 1
            Unmanaged<BlockRequest>.fromOpaque(block.pointee.data!)._withUnsafeGuaranteedRef { device.finish($0, result: Int(submitted)) }
        }
        submitDeferral.arm()
    }

    /// `io_submit`s the queued control blocks and drops those the kernel
    /// took from the queue. Returns `io_submit`'s status.
    private func pushQueued(_ context: io_context_t) -> Int {
        let count = queued.count
        let submitted = queued.withUnsafeMutableBufferPointer { SystemCalls.ioSubmit(context, count, $0.baseAddress) }
        if submitted == count {
            queued.removeAllKeepingCapacity()
        } else if submitted > 0 {
            queued.removeFirst(Int(submitted))
        }
        return Int(submitted)
    }

    /// The eventfd fired. Its watch is edge-triggered and every completion
    /// writes to it, so it is not read down: the counter only grows (it
    /// would take 2^64 completions to fill), and the read would cost a
    /// system call per wake-up, a third beside `io_submit` and the wait.
    private func reap() {
        collect()
    }

    /// Hands every completed event back to the device.
    private func collect() {
        guard let context else { return }
        var none = timespec(tv_sec: 0, tv_nsec: 0)
        while true {
            var count = Int(cevpl_aio_take_events(context, events, Int32(eventCapacity)))
            if count < 0 { count = Int(io_getevents(context, 0, eventCapacity, events, &none)) }
            if count <= 0 { break }
            for index in 0..<Int(count) {
                let event = events[index]
                spareBlocks.append(event.obj)
                inFlight -= 1
                Unmanaged<BlockRequest>.fromOpaque(event.data!)._withUnsafeGuaranteedRef {
                    device.finish($0, result: Int(Int64(bitPattern: UInt64(event.res))))
                }
            }
            if Int(count) < eventCapacity { break }
        }
        releaseIfDone()
    }

    override func shutdown() {
        closing = true
        releaseIfDone()
    }

    private func releaseIfDone() {
        if closing && inFlight == 0 && device.pendingRequests == 0 { release() }
    }

    /// Lets go of the loop and the kernel context once nothing is in flight.
    private func release() {
        guard !released else { return }
        released = true
        watch?.remove()
        SystemCalls.close(eventFD)
        if let context { io_destroy(context) }
        context = nil
    }
}
