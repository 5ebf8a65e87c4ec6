/// A device's completions as an async sequence: requests are submitted
/// with the callback API's calls (``BlockDevice/read(into:at:tag:)-(IOVec,_,_)`` and the
/// rest, each with its `tag`), and one task takes their completions in the
/// order they finish.
///
/// This is the async form of a submission and a completion queue, the
/// shape io_uring itself has. Awaiting each request in a task of its own
/// (``BlockDevice/read(into:at:)-(IOVec,_)``) suspends and resumes a task per
/// request; here the consumer suspends only when no completion is ready,
/// so at depth it takes a whole batch of completions per resumption.
///
/// ```swift
/// let completions = device.completions()
/// for slot in 0..<32 { device.read(into: buffers[slot], at: offsets[slot], tag: UInt64(slot)) }
/// for try await completion in completions {
///     // use buffers[Int(completion.tag)], then submit the next request with the same tag
/// }
/// // the loop ends once no request is left in flight
/// ```
///
/// Creating it makes it the device's ``BlockDevice/handler``: completions
/// of tagged requests go to it, while the async per-request calls still
/// resume their own tasks. Like the device, it belongs to the loop's
/// thread; one task iterates it at a time.
public final class BlockCompletions: AsyncSequence {
    /// What each iteration yields.
    public typealias Element = BlockCompletion
    /// What iterating throws.
    public typealias Failure = EvplError

    private unowned let device: BlockDevice
    @exclusivity(unchecked) private var ready: [BlockCompletion] = []
    private var nextReady = 0
    private let waiter: SuspendedTask

    init(device: BlockDevice) {
        self.device = device
        waiter = SuspendedTask(loop: device.loop)
        // The device keeps this sequence alive through its handler.
        device.handler = { [self] _, completion in
            ready.append(completion)
            waiter.resume()
        }
    }

    /// The next completion, waiting for one when none is ready; `nil` once
    /// none is ready and no request is in flight (``BlockDevice/pendingRequests``
    /// is 0).
    ///
    /// - Throws: ``EvplError`` `.cancelled` when the task is cancelled
    ///   while it waits, `.timedOut` past the deadline of an enclosing
    ///   ``EventLoop/withTimeout(_:_:)``. The requests stay in flight and
    ///   their completions wait for the next call.
    nonisolated(nonsending) public func next() async throws(EvplError) -> BlockCompletion? {
        device.loop.checkLoopThread()
        while true {
            if nextReady < ready.count {
                let completion = ready[nextReady]
                nextReady += 1
                if nextReady == ready.count {
                    ready.removeAll(keepingCapacity: true)
                    nextReady = 0
                } else if nextReady >= 64 && nextReady * 2 >= ready.count {
                    // Completions keep arriving before the last is taken: drop the taken ones.
                    ready.removeFirst(nextReady)
                    nextReady = 0
                }
                return completion
            }
            guard device.pendingRequests > 0 else { return nil }
            try await waiter.wait("block completions")
        }
    }

    /// Starts iterating.
    public func makeAsyncIterator() -> Iterator {
        Iterator(completions: self)
    }

    /// Yields each completion through ``BlockCompletions/next()``.
    public struct Iterator: AsyncIteratorProtocol {
        let completions: BlockCompletions

        /// The next completion, or `nil` once no request is in flight.
        public mutating func next(isolation actor: isolated (any Actor)?) async throws(EvplError) -> BlockCompletion? {
            try await completions.next()
        }

        /// The next completion, or `nil` once no request is in flight.
        public mutating func next() async throws(EvplError) -> BlockCompletion? {
            try await completions.next()
        }
    }
}

extension BlockDevice {
    /// The completions of this device's tagged requests as an async
    /// sequence (see ``BlockCompletions``); it becomes the device's
    /// ``handler``.
    public func completions() -> BlockCompletions {
        loop.checkLoopThread()
        return BlockCompletions(device: self)
    }
}
