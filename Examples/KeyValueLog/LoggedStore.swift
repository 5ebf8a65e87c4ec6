import Evpl

/// The values and the log they persist in, for servers written with
/// callbacks on one loop.
///
/// Changes are written one at a time, in arrival order: the first in the
/// queue is written, then flushed, then applied and its completion called,
/// and only then is the next one written. So the log's order is the order
/// changes were confirmed in, and the log never has a hole: its end moves
/// only past a record that is durable. A failed write or flush stops the
/// store taking changes (what is in the log stays right; an operator looks
/// at the disk).
public final class LoggedStore {
    /// A change waiting its turn: `value` nil deletes `key`.
    private struct Change {
        var key: String
        var value: [UInt8]?
        var record: [UInt8]
        var done: (EvplError?) -> Void
    }

    private let loop: EventLoop
    private let device: BlockDevice
    private var values: [String: [UInt8]]
    private var logEnd: UInt64
    private var queue: [Change] = []
    private var flushing = false
    private var failure: EvplError?

    /// The largest record one change may write: one pool buffer.
    public var largestRecord: Int { loop.bufferPool.bufferSize }

    /// Opens the log at `path` (created if absent) on `loop` and reads it
    /// back with block reads, one pool buffer at a time.
    public init(loop: EventLoop, path: String) throws {
        self.loop = loop
        device = try loop.openBlockDevice(path, engine: .psync, create: 0)
        var log: [UInt8] = []
        var completion: BlockCompletion?
        device.handler = { _, finished in completion = finished }
        while UInt64(log.count) < device.size {
            var chunk = try loop.bufferPool.allocate()
            defer { chunk.release() }
            chunk.length = Int(min(UInt64(chunk.length), device.size - UInt64(log.count)))
            completion = nil
            device.read(into: chunk, at: UInt64(log.count), tag: 0)
            while completion == nil { loop.runOnce() }
            if let error = completion?.error { throw error }
            log += UnsafeRawBufferPointer(chunk.bytes)
        }
        let (values, end) = LogRecord.replay(log)
        self.values = values
        logEnd = UInt64(end)
        try LogRecord.cutTornTail(of: path, at: logEnd, size: device.size)
        device.handler = { [unowned self] _, completion in completed(completion) }
    }

    /// The value of `key`, as of the last durable change.
    public subscript(key: String) -> [UInt8]? { values[key] }

    /// Sets `key` to `value`, or deletes it when `value` is `nil`; `done`
    /// is called once the change is durable, or with why it is not.
    public func change(_ key: String, to value: [UInt8]?, done: @escaping (EvplError?) -> Void) {
        if let failure {
            done(failure)
            return
        }
        let record = LogRecord.encoded(key: key, value: value)
        guard record.count <= largestRecord else {
            done(EvplError(.invalidArgument, operation: "set", context: "a record holds at most \(largestRecord) bytes"))
            return
        }
        queue.append(Change(key: key, value: value, record: record, done: done))
        if queue.count == 1 { writeFirst() }
    }

    /// Writes the first queued record at the log's end.
    private func writeFirst() {
        guard let first = queue.first else { return }
        let iovec: IOVec
        do {
            iovec = try loop.bufferPool.allocate()
        } catch {
            finishFirst(error)
            writeFirst()
            return
        }
        var record = iovec
        record.length = first.record.count
        first.record.withUnsafeBytes { record.bytes.copyMemory(from: $0) }
        flushing = false
        device.write(record, at: logEnd, tag: 0)
        iovec.release()  // the device holds its own reference until the write completes
    }

    private func completed(_ completion: BlockCompletion) {
        guard let first = queue.first else { return }
        if let error = completion.error {
            failure = error
            while !queue.isEmpty { finishFirst(error) }
        } else if !flushing {
            flushing = true
            device.flush(tag: 0)
        } else {
            logEnd += UInt64(first.record.count)
            values[first.key] = first.value
            finishFirst(nil)
            writeFirst()
        }
    }

    private func finishFirst(_ error: EvplError?) {
        queue.removeFirst().done(error)
    }

    /// Closes the log once the changes in flight are done.
    public func close() { device.close() }
}
