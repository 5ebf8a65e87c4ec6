import Evpl
import Synchronization
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// Runs `operation` as a task on `loop`'s executor, turning the loop on
/// this thread until the task ends, and rethrows what it threw. The task
/// reaches its loop through `EventLoop.current`.
func runTask(on loop: EventLoop, seconds: Double = 30, _ what: String,
             _ operation: @escaping @Sendable () async throws -> Void) throws {
    let result = Mutex<Result<Void, any Error>?>(nil)
    Task(executorPreference: loop.executor) {
        do {
            try await operation()
            result.withLock { $0 = .success(()) }
        } catch {
            result.withLock { $0 = .failure(error) }
        }
    }
    try spin(loop, seconds: seconds, what) { result.withLock { $0 != nil } }
    try result.withLock { $0! }.get()
}

/// The loop the calling task runs on; fails the test off a loop.
func currentLoop(sourceLocation: SourceLocation = #_sourceLocation) throws -> EventLoop {
    try #require(EventLoop.current, "not running on an event loop", sourceLocation: sourceLocation)
}

/// Runs each of `operations` as a task on `loop`'s executor until all have
/// ended, and rethrows the first error one threw.
func runTasks(on loop: EventLoop, seconds: Double = 60, _ what: String,
              _ operations: [@Sendable () async throws -> Void]) throws {
    let results = Mutex<[Result<Void, any Error>]>([])
    for operation in operations {
        Task(executorPreference: loop.executor) { @Sendable in
            let result: Result<Void, any Error>
            do {
                try await operation()
                result = .success(())
            } catch {
                result = .failure(error)
            }
            results.withLock { $0.append(result) }
        }
    }
    try spin(loop, seconds: seconds, what) { results.withLock { $0.count == operations.count } }
    for result in results.withLock({ $0 }) { try result.get() }
}

/// Accepts exactly one connection from `listener` on the current loop.
nonisolated(nonsending) func acceptOne(from listener: Listener, segmenter: Segmenter? = nil, window: Int = AsyncConnection.defaultWindow) async throws -> AsyncConnection {
    let incoming = try currentLoop().connections(from: listener, segmenter: segmenter, window: window)
    defer { incoming.stop() }
    return try #require(try await incoming.accept())
}

/// Reads from `connection` until `count` bytes have arrived (or it ends),
/// copying them out.
nonisolated(nonsending) func receiveBytes(_ connection: AsyncConnection, count: Int) async throws -> [UInt8] {
    var bytes: [UInt8] = []
    while bytes.count < count, let chunk = try await connection.receive() {
        bytes += chunk.array
    }
    return bytes
}

/// Polls `condition` every millisecond (blocking the calling thread) until
/// it holds; throws ``TimedOut`` after `seconds` instead of hanging.
func waitUntil(seconds: Double = 10, _ what: String, _ condition: () -> Bool) throws {
    let deadline = MonotonicClock.nanoseconds() + UInt64(seconds * 1e9)
    while !condition() {
        if MonotonicClock.nanoseconds() > deadline { throw TimedOut(what: what) }
        usleep(1000)
    }
}

/// Polls until `box` holds a value and returns it; throws ``TimedOut``
/// after `seconds`.
func waitForValue<Value: Sendable>(_ box: borrowing Mutex<Value?>, seconds: Double = 10, _ what: String) throws -> Value {
    var value: Value?
    try waitUntil(seconds: seconds, what) {
        value = box.withLock { $0 }
        return value != nil
    }
    return value!
}

/// Hands loop-bound values to a task that runs on the same loop (one that
/// prefers the loop's executor): they are only used on the loop's thread,
/// which the compiler cannot see through `Task`'s `@Sendable` closure.
struct OnLoopValue<Value>: @unchecked Sendable {
    let value: Value
    init(_ value: Value) { self.value = value }
}
