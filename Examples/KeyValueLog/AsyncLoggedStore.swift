import Evpl

/// The values and the log they persist in, as an actor that runs on an
/// event loop's thread: its executor is the loop's, so its methods use the
/// loop's block device directly and a connection's task on the same loop
/// reaches it without a thread hop.
///
/// Changes are committed in groups. The first change starts a commit task;
/// every change that arrives while a group is being written and flushed
/// waits for the next group, which goes out as one gather write and one
/// flush. A change is applied and confirmed only once its group is durable,
/// so a read never sees a value a crash could take back, and the log's end
/// moves only past durable records (the log never has a hole).
public actor AsyncLoggedStore {
    /// The executor of the loop the store runs on.
    public nonisolated let executor: EventLoopExecutor
    /// The loop's executor, so that the actor runs on the loop's thread.
    public nonisolated var unownedExecutor: UnownedSerialExecutor { executor.asUnownedSerialExecutor() }

    /// A change waiting for its group to be durable (`value` nil deletes);
    /// `answer` resumes its task with the log's error, or nil.
    private struct PendingSet {
        var key: String
        var value: [UInt8]?
        var record: [UInt8]
        var answer: UnsafeContinuation<EvplError?, Never>
    }

    /// Bytes of records one commit writes at most.
    private static let groupBytes = 1 << 20

    private let device: BlockDevice
    private var values: [String: [UInt8]]
    private var logEnd: UInt64
    private var pending: [PendingSet] = []
    private var committing = false
    private var commitEnded: [UnsafeContinuation<Void, Never>] = []
    /// Why SETs are refused: the log failed, or the store is closing.
    private var refusal: String?

    /// Opens the log at `path` (created if absent) on the loop of
    /// `executor`, reads it back with block reads and replays it.
    public static func open(_ path: String, on executor: EventLoopExecutor) async throws -> AsyncLoggedStore {
        try await withTaskExecutorPreference(executor) { try await AsyncLoggedStore(loading: path, executor: executor) }
    }

    /// Runs on the loop of `executor`: the preference set by `open`
    /// applies to an initializer until it is isolated to the actor.
    private init(loading path: String, executor: EventLoopExecutor) async throws {
        let loop = EventLoop.current!
        let device = try loop.openBlockDevice(path, engine: .psync, create: 0)
        var log: [UInt8] = []
        let chunk = try loop.bufferPool.allocate()
        defer { chunk.release() }
        while UInt64(log.count) < device.size {
            var part = chunk
            part.length = Int(min(UInt64(chunk.length), device.size - UInt64(log.count)))
            _ = try await device.read(into: part, at: UInt64(log.count))
            log += UnsafeRawBufferPointer(part.bytes)
        }
        let (values, end) = LogRecord.replay(log)
        try LogRecord.cutTornTail(of: path, at: UInt64(end), size: device.size)
        self.executor = executor
        self.device = device
        self.values = values
        logEnd = UInt64(end)
    }

    /// The value of `key`, as of the last durable change.
    public func value(for key: String) -> [UInt8]? { values[key] }

    /// Sets `key` to `value`, or deletes it when `value` is `nil`; returns
    /// once the change is durable, or with why it is not.
    public func change(_ key: String, to value: [UInt8]?) async -> EvplError? {
        if let refusal { return EvplError(.invalidState, operation: "set", context: refusal) }
        let record = LogRecord.encoded(key: key, value: value)
        return await withUnsafeContinuation { answer in
            pending.append(PendingSet(key: key, value: value, record: record, answer: answer))
            if !committing {
                committing = true
                // With the loop as preference, the commit's awaits resume on
                // the loop; a plain `Task {}` would resume each one through
                // the global pool first.
                Task(executorPreference: executor) { [self] in await commitPending() }
            }
        }
    }

    /// Commits groups until no SET waits.
    private func commitPending() async {
        while !pending.isEmpty {
            var groupSize = 0
            let count = pending.prefix { set in
                defer { groupSize += set.record.count }
                return groupSize == 0 || groupSize + set.record.count <= Self.groupBytes
            }.count
            let group = pending.prefix(count)
            pending.removeFirst(count)
            if let failure = await append(group.flatMap(\.record)) {
                refusal = "the log failed: \(failure)"
                for set in group + pending { set.answer.resume(returning: failure) }
                pending.removeAll()
            } else {
                for set in group {
                    values[set.key] = set.value
                    set.answer.resume(returning: nil)
                }
            }
        }
        committing = false
        for waiter in commitEnded { waiter.resume() }
        commitEnded.removeAll()
    }

    /// Writes `bytes` at the log's end from pool buffers, flushes, and
    /// moves the end past them.
    private func append(_ bytes: [UInt8]) async -> EvplError? {
        var buffers: [IOVec] = []
        defer { for buffer in buffers { buffer.release() } }
        do throws(EvplError) {
            var copied = 0
            while copied < bytes.count {
                var buffer = try device.loop.bufferPool.allocate()
                buffer.length = min(buffer.length, bytes.count - copied)
                bytes[copied..<(copied + buffer.length)].withUnsafeBytes { buffer.bytes.copyMemory(from: $0) }
                copied += buffer.length
                buffers.append(buffer)
            }
            _ = try await device.write(buffers, at: logEnd)
            try await device.flush()
        } catch {
            return error
        }
        logEnd += UInt64(bytes.count)
        return nil
    }

    /// Refuses further changes, lets the ones already taken become durable
    /// and be confirmed, then closes the log.
    public func close() async {
        refusal = refusal ?? "the server is shutting down"
        if committing {
            await withUnsafeContinuation { commitEnded.append($0) }
        }
        device.close()
    }
}
