import Evpl
import Synchronization
import Testing

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
