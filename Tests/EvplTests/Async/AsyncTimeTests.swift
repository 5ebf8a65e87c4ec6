import Evpl
import Synchronization
import Testing
#if canImport(Glibc)
import Glibc
#endif

@Suite("Async sleep, timeouts and cancellation")
struct AsyncTimeTests {
    @Test("sleep(for:) waits at least its duration on the loop's timers, and the idle loop sleeps meanwhile", arguments: LoopWait.usable)
    func sleepWaits(_ wait: LoopWait) throws {
        let loop = try makeLoop(waitingIn: wait) { $0.spinNanoseconds = 0 }
        let sleepsBefore = loop.statistics.sleeps
        try runTask(on: loop, "the sleeps") {
            let loop = try currentLoop()
            for milliseconds in [1, 20] {
                let start = MonotonicClock.nanoseconds()
                try await loop.sleep(for: .milliseconds(milliseconds))
                let elapsed = MonotonicClock.nanoseconds() - start
                #expect(elapsed >= UInt64(milliseconds) * 1_000_000 && elapsed < 2_000_000_000, "\(milliseconds) ms took \(elapsed) ns")
            }
            try await loop.sleep(for: .zero)
            try await loop.sleep(for: .milliseconds(-5))
            await #expect(throws: EvplError.self) { try await loop.sleep(for: .seconds(Int64.max)) }
        }
        #expect(loop.statistics.sleeps > sleepsBefore)
        expectNoLeaks(loop)
    }

    @Test("withTimeout ends a longer sleep with .timedOut at its deadline; a shorter one finishes; nested keeps the earlier deadline")
    func timeouts() throws {
        let loop = try makeLoop()
        try runTask(on: loop, "the timeouts") {
            let loop = try currentLoop()
            func timedOut(after duration: Duration, _ operation: () async throws -> Void) async -> UInt64? {
                let start = MonotonicClock.nanoseconds()
                do {
                    try await operation()
                    return nil
                } catch let error as EvplError where error.code == .timedOut {
                    return MonotonicClock.nanoseconds() - start
                } catch {
                    Issue.record("unexpected \(error)")
                    return nil
                }
            }
            let single = await timedOut(after: .milliseconds(10)) {
                try await EventLoop.withTimeout(.milliseconds(10)) { try await loop.sleep(for: .seconds(5)) }
            }
            #expect(single.map { $0 >= 10_000_000 && $0 < 2_000_000_000 } == true, "\(String(describing: single))")
            let nested = await timedOut(after: .milliseconds(10)) {
                try await EventLoop.withTimeout(.milliseconds(10)) {
                    try await EventLoop.withTimeout(.seconds(5)) { try await loop.sleep(for: .seconds(5)) }
                }
            }
            #expect(nested.map { $0 < 2_000_000_000 } == true)
            let expired = await timedOut(after: .zero) {
                try await EventLoop.withTimeout(.zero) { try await loop.sleep(for: .seconds(5)) }
            }
            #expect(expired.map { $0 < 1_000_000_000 } == true)
            let value = try await EventLoop.withTimeout(.seconds(5)) {
                try await loop.sleep(for: .milliseconds(2))
                return 42
            }
            #expect(value == 42)
            // The deadline belongs to the scope: a sleep after it is not cut short.
            try await loop.sleep(for: .milliseconds(15))
        }
        expectNoLeaks(loop)
    }

    @Test("a task cancelled from a loop callback while it sleeps ends within one iteration with .cancelled", arguments: LoopWait.usable)
    func cancelOnLoop(_ wait: LoopWait) throws {
        let loop = try makeLoop(waitingIn: wait)
        let outcome = Mutex<EvplError.Code?>(nil)
        let endedIn = Atomic<UInt64>(0)
        let task = Task(executorPreference: loop.executor) { @Sendable in
            do throws(EvplError) {
                try await EventLoop.current!.sleep(for: .seconds(30))
            } catch {
                outcome.withLock { $0 = error.code }
            }
            endedIn.store(EventLoop.current!.statistics.iterations, ordering: .relaxed)
        }
        var cancelledIn: UInt64 = 0
        try loop.addOneShotTimer(after: .milliseconds(5)) { _ in
            cancelledIn = loop.statistics.iterations
            task.cancel()
        }
        try spin(loop, seconds: 10, "the cancelled sleep") { endedIn.load(ordering: .relaxed) != 0 }
        #expect(outcome.withLock { $0 } == .cancelled)
        #expect(endedIn.load(ordering: .relaxed) == cancelledIn, "cancelled in iteration \(cancelledIn)")
        expectNoLeaks(loop)
    }

    @Test("a task on a loop cancelled from another thread ends promptly with .cancelled")
    func cancelFromElsewhere() async throws {
        let executorBox = Mutex<EventLoopExecutor?>(nil)
        let thread = TestThread {
            let loop = try! makeLoop()
            executorBox.withLock { $0 = loop.executor }
            loop.run()
            loop.closeAll()
        }
        let executor = try waitForValue(executorBox, "the loop thread")
        // When the sleep ended, measured on the loop: the test's own task
        // may wait for a free thread before it resumes.
        let endedAt = Atomic<UInt64>(0)
        let sleeper = Task(executorPreference: executor) { () async throws -> Void in
            defer { endedAt.store(MonotonicClock.nanoseconds(), ordering: .releasing) }
            try await EventLoop.current!.sleep(for: .seconds(30))
        }
        usleep(20_000)
        let start = MonotonicClock.nanoseconds()
        sleeper.cancel()
        let result = await sleeper.result
        let elapsed = endedAt.load(ordering: .acquiring) &- start
        #expect(elapsed < 1_000_000_000, "took \(elapsed) ns")
        if case .failure(let error) = result {
            #expect((error as? EvplError)?.code == .cancelled)
        } else {
            Issue.record("the sleep was not cancelled")
        }
        // Cancelled before it starts: a sleep throws at once.
        let early = Task(executorPreference: executor) { () async throws -> Void in
            withUnsafeCurrentTask { $0?.cancel() }
            try await EventLoop.current!.sleep(for: .zero)
        }
        await #expect(throws: EvplError.self) { try await early.value }
        executor.remote.stop()
        thread.join()
    }
}
