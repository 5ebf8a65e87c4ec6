/// What an engine does for a ``BlockDevice``: start requests. Each started
/// request later comes back through ``BlockDevice/finish(_:result:)`` on the
/// device's loop with a byte count or a negative errno.
protocol BlockDriver: AnyObject {
    func start(_ request: BlockRequest)
    /// Stops accepting work; requests already started still finish.
    func shutdown()
}

/// The null engine: every request succeeds at the end of the iteration
/// without touching storage (reads leave the buffers as they are).
final class NullBlockDriver: BlockDriver {
    private unowned(unsafe) let device: BlockDevice
    @exclusivity(unchecked) private var done: [BlockRequest] = []
    @exclusivity(unchecked) private var finishing: [BlockRequest] = []
    private var deferral: Deferral!

    init(device: BlockDevice, loop: EventLoop) {
        self.device = device
        deferral = loop.makeDeferral { [unowned self] _ in finishAll() }
    }

    func start(_ request: BlockRequest) {
        done.append(request)
        deferral.arm()
    }

    private func finishAll() {
        swap(&done, &finishing)
        for request in finishing {
            device.finish(request, result: request.length)
        }
        finishing.removeAll(keepingCapacity: true)
    }

    func shutdown() {}
}
