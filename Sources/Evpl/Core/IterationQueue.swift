/// Work queued during a loop iteration for a batch later in it (flushes,
/// read passes, deferrals, memory waiters): what is queued while a batch
/// runs waits for the next one, so a callback that queues again cannot keep
/// the batch going for ever.
///
/// Two arrays trade places, so that neither allocates in steady state. A
/// batch is walked by index through the owner's stored property
/// (`queue.batch[index]`), which ends each access before the element's work
/// runs and may append to the same queue.
struct IterationQueue<Element> {
    /// What waits for the next batch.
    private(set) var queued: [Element] = []
    /// The batch being run: what was queued when it began.
    private(set) var batch: [Element] = []

    /// Whether nothing waits for the next batch.
    var isEmpty: Bool { queued.isEmpty }
    /// How many elements wait for the next batch.
    var count: Int { queued.count }

    /// Makes room for `count` elements in both arrays ahead of use.
    mutating func reserveCapacity(_ count: Int) {
        queued.reserveCapacity(count)
        batch.reserveCapacity(count)
    }

    /// Queues `element` for the next batch.
    @inline(__always)
    mutating func append(_ element: Element) {
        queued.append(element)
    }

    /// Starts a batch with everything queued so far; false when nothing is.
    @inline(__always)
    mutating func beginBatch() -> Bool {
        guard !queued.isEmpty else { return false }
        swap(&queued, &batch)
        return true
    }

    /// Drops what waits for the next batch, and the storage of both arrays.
    mutating func removeAll() {
        queued = []
        batch = []
    }

    /// Ends the batch, keeping its storage for the next one.
    @inline(__always)
    mutating func endBatch() {
        batch.removeAllKeepingCapacity()
    }
}
