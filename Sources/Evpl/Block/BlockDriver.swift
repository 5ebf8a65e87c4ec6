/// What an engine does for a ``BlockDevice``: start requests. Each started
/// request later comes back through ``BlockDevice/finish(_:result:)`` on the
/// device's loop with a byte count or a negative errno.
///
/// A class to subclass rather than a protocol, so that the device can call
/// it through an `Unmanaged` reference, with no reference counting per
/// request (an existential's call retains and releases its object).
class BlockDriver {
    /// Hands `request` to the engine.
    func start(_ request: BlockRequest) {
        preconditionFailure("\(type(of: self)) does not start requests")
    }

    /// Stops accepting work; requests already started still finish.
    func shutdown() {}
}

/// Requests an engine finished inside ``BlockDriver/start(_:)`` (or never
/// needed to run), handed back to the device after the call that
/// submitted them has returned, so that a completion never runs inside it.
///
/// They are delivered together at the end of the iteration. A request the
/// handler submits meanwhile that also finishes at once joins the same
/// delivery, up to ``deliveriesPerPass`` in a row; the rest waits for the
/// next iteration, so that such a chain cannot starve the loop. A depth-1
/// chain on the null engine thus costs one loop pass per
/// ``deliveriesPerPass`` requests, not one per request.
final class DeferredCompletions {
    /// A request and what it finished with.
    private struct Finished {
        /// Owned by the device.
        let request: Unmanaged<BlockRequest>
        let result: Int
    }

    /// The device, which owns this object.
    private let device: Unmanaged<BlockDevice>
    /// What waits for delivery.
    @exclusivity(unchecked) private var queued: [Finished] = []
    /// What is being delivered: what was queued when its round began.
    @exclusivity(unchecked) private var batch: [Finished] = []
    @exclusivity(unchecked) private var isDelivering = false
    private var deferral: Deferral!
    /// Called after each delivery, for engines that count what is in flight.
    var afterBatch: () -> Void = {}
    /// The most completions delivered in a row before the loop gets its
    /// turn (rounded up to a whole round).
    static let deliveriesPerPass = 256

    init(device: BlockDevice, loop: EventLoop) {
        self.device = Unmanaged.passUnretained(device)
        deferral = loop.makeDeferral { [unowned(unsafe) self] _ in deliver() }
    }

    @inline(__always)
    func add(_ request: BlockRequest, result: Int) {
        queued.append(Finished(request: Unmanaged.passUnretained(request), result: result))
        if !isDelivering { deferral.arm() }
    }

    private func deliver() {
        isDelivering = true
        var delivered = 0
        while delivered < Self.deliveriesPerPass && !queued.isEmpty {
            swap(&queued, &batch)
            for index in batch.indices {
                let finished = batch[index]
                device._withUnsafeGuaranteedRef { device in
                    finished.request._withUnsafeGuaranteedRef { device.finish($0, result: finished.result) }
                }
            }
            delivered += batch.count
            batch.removeAll(keepingCapacity: true)
        }
        isDelivering = false
        if !queued.isEmpty { deferral.arm() }
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

    override func start(_ request: BlockRequest) {
        completions.add(request, result: request.remaining)
    }
}
