import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// N threads, each running its own ``EventLoop``.
///
/// Each thread creates its loop, runs `onStart` (which returns that
/// thread's state, handed later to `onStop`), and then runs the loop.
/// The initializer returns only after every thread has finished `onStart`.
/// ``stop()`` stops every loop, closes every connection still open on it
/// abortively (each gets its `disconnected` event), runs `onStop` on each
/// thread and joins them all; ``shutdownGracefully(timeout:)`` lets every
/// connection finish first.
///
/// `ThreadState` never leaves its thread, so it need not be `Sendable`.
public final class EventLoopThreadPool<ThreadState>: Sendable {
    /// Remotes of the pool's loops, in thread order.
    public let remotes: [EventLoopRemote]
    /// The pool's loops as Swift concurrency executors, in thread order:
    /// start a task on a loop with `Task(executorPreference: pool.executors[i])`.
    public let executors: [EventLoopExecutor]
    private let threads: Locked<[pthread_t]>

    /// Starts `count` threads.
    ///
    /// - Parameters:
    ///   - count: number of threads, at least 1.
    ///   - config: global settings; `nil` uses the defaults with `EVPL_*` overrides.
    ///   - loopConfig: per-thread loop settings, given the thread index.
    ///   - onStart: runs on each new thread with its loop and index before the
    ///     loop runs; its result is that thread's state.
    ///   - onStop: runs on each thread after its loop stopped and its
    ///     connections closed.
    /// - Throws: ``EvplError`` when a thread or loop cannot be created; threads
    ///   already started are stopped first.
    public init(
        count: Int,
        config: EvplConfig? = nil,
        loopConfig: @escaping @Sendable (Int) -> LoopConfig = { LoopConfig(name: "evpl-\($0)") },
        onStart: @escaping @Sendable (EventLoop, Int) -> ThreadState,
        onStop: @escaping @Sendable (EventLoop, ThreadState) -> Void = { _, _ in }
    ) throws(EvplError) {
        guard count >= 1 else {
            throw EvplError(.invalidArgument, operation: "thread pool", context: "count \(count)")
        }
        let resolved: EvplConfig
        if let config { resolved = config } else { resolved = try EvplConfig.fromProcessEnvironment() }
        let startup = StartupBarrier(count: count)
        var threads: [pthread_t] = []
        for index in 0..<count {
            do throws(EvplError) {
                let thread = try LoopThread.spawn(name: loopConfig(index).name) {
                    let loop: EventLoop
                    do throws(EvplError) {
                        loop = try EventLoop(config: resolved, loopConfig: loopConfig(index))
                    } catch {
                        startup.arrive(index: index, result: .failure(error))
                        return
                    }
                    let state = onStart(loop, index)
                    startup.arrive(index: index, result: .success(loop.executor))
                    loop.run()
                    loop.closeAll()
                    onStop(loop, state)
                }
                threads.append(thread)
            } catch {
                startup.arrive(index: index, result: .failure(error))
            }
        }
        let results = startup.wait()
        let executors = results.compactMap { try? $0.get() }
        if executors.count != count {
            for executor in executors { executor.remote.stop() }
            for thread in threads { pthread_join(thread, nil) }
            let failure = results.lazy.compactMap { result -> EvplError? in
                if case .failure(let error) = result { return error } else { return nil }
            }.first
            throw failure ?? EvplError(.system, operation: "thread pool")
        }
        self.executors = executors
        self.remotes = executors.map(\.remote)
        self.threads = Locked(threads)
    }

    /// Number of threads.
    public var count: Int { remotes.count }

    /// Stops every loop, closes their connections, runs `onStop` on each
    /// thread and joins them. Safe to call more than once.
    public func stop() {
        let joining = threads.withLock { threads in
            defer { threads.removeAll() }
            return threads
        }
        guard !joining.isEmpty else { return }
        for remote in remotes { remote.stop() }
        for thread in joining { pthread_join(thread, nil) }
    }

    /// Shuts every loop down gracefully (``EventLoop/shutdownGracefully(timeout:_:)``:
    /// no new connections, every connection finishes, block requests
    /// complete, the rest is closed abortively at `timeout`), then runs
    /// `onStop` on each thread and joins them. Returns what happened on all
    /// loops together. Close the listeners first, so that nothing waits in
    /// their backlogs. Calling it after ``stop()`` does nothing.
    @discardableResult
    public func shutdownGracefully(timeout: Duration) -> ShutdownReport {
        shutdownGracefully(timeout: timeout, linger: nil)
    }

    /// ``shutdownGracefully(timeout:)`` that closes a connection whose end
    /// of stream went out once its peer stayed silent for `linger`
    /// (``EventLoop/shutdownGracefully(timeout:linger:_:)``): idle
    /// keep-alive clients do not hold the shutdown until `timeout`.
    @discardableResult
    public func shutdownGracefully(timeout: Duration, linger: Duration?) -> ShutdownReport {
        let joining = threads.withLock { threads in
            defer { threads.removeAll() }
            return threads
        }
        guard !joining.isEmpty else { return ShutdownReport() }
        let reports = ReportCollector()
        for remote in remotes {
            remote.execute { loop in
                loop.shutdownGracefully(timeout: timeout, linger: linger) { reports.add($0) }
            }
        }
        for thread in joining { pthread_join(thread, nil) }
        return reports.total
    }

    deinit {
        stop()
    }
}

/// Sums the reports of loops shutting down on their own threads.
private final class ReportCollector: Sendable {
    private let state = Locked(ShutdownReport())
    func add(_ report: ShutdownReport) { state.withLock { $0.merge(report) } }
    var total: ShutdownReport { state.withLock { $0 } }
}

/// Collects each thread's start result and releases the creator once all
/// have reported.
private final class StartupBarrier: Sendable {
    private let results: Locked<[Result<EventLoopExecutor, EvplError>?]>
    private let arrived = Atomic<Int>(0)
    private let count: Int

    init(count: Int) {
        self.count = count
        self.results = Locked(Array(repeating: nil, count: count))
    }

    func arrive(index: Int, result: Result<EventLoopExecutor, EvplError>) {
        results.withLock { $0[index] = result }
        arrived.add(1, ordering: .releasing)
    }

    func wait() -> [Result<EventLoopExecutor, EvplError>] {
        while arrived.load(ordering: .acquiring) < count {
            usleep(100)
        }
        return results.withLock { $0.map { $0! } }
    }
}
