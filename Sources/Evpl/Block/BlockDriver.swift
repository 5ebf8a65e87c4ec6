/// What an engine does for a ``BlockDevice``: start requests. Each started
/// request later comes back through ``BlockDevice/finish(_:result:)`` on the
/// device's loop with a byte count or a negative errno.
protocol BlockDriver: AnyObject {
    func start(_ request: BlockRequest)
    /// Stops accepting work; requests already started still finish.
    func shutdown()
}

/// Requests an engine finished inside ``BlockDriver/start(_:)`` (or never
/// needed to run), handed back to the device at the end of the iteration so
/// a completion never runs inside the call that submitted it.
final class DeferredCompletions {
    private unowned(unsafe) let device: BlockDevice
    @exclusivity(unchecked) private var done: [(request: BlockRequest, result: Int)] = []
    @exclusivity(unchecked) private var finishing: [(request: BlockRequest, result: Int)] = []
    private var deferral: Deferral!
    /// Called after each batch, for engines that count what is in flight.
    var afterBatch: () -> Void = {}

    init(device: BlockDevice, loop: EventLoop) {
        self.device = device
        deferral = loop.makeDeferral { [unowned(unsafe) self] _ in finishAll() }
    }

    func add(_ request: BlockRequest, result: Int) {
        done.append((request, result))
        deferral.arm()
    }

    private func finishAll() {
        swap(&done, &finishing)
        for index in finishing.indices {
            device.finish(finishing[index].request, result: finishing[index].result)
        }
        finishing.removeAllKeepingCapacity()
        afterBatch()
    }
}

/// The null engine: every request succeeds at the end of the iteration
/// without touching storage (reads leave the buffers as they are).
final class NullBlockDriver: BlockDriver {
    private let completions: DeferredCompletions

    init(device: BlockDevice, loop: EventLoop) {
        completions = DeferredCompletions(device: device, loop: loop)
    }

    func start(_ request: BlockRequest) {
        completions.add(request, result: request.remaining)
    }

    func shutdown() {}
}
