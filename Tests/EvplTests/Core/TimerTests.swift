import Evpl
import Testing
#if canImport(Glibc)
import Glibc
#endif

@Suite("Timers")
struct TimerTests {
    @Test("a 50 ms one-shot timer never fires early, and fires exactly once", arguments: LoopWait.usable)
    func oneShotNotEarly(_ wait: LoopWait) throws {
        let loop = try makeLoop(waitingIn: wait)
        var firings: [UInt64] = []
        let start = MonotonicClock.nanoseconds()
        let timer = try loop.addOneShotTimer(after: .microseconds(50_000)) { _ in
            firings.append(MonotonicClock.nanoseconds())
        }
        try spin(loop, seconds: 5, "the one-shot timer") { !firings.isEmpty }
        try runLoop(loop, forMilliseconds: 100)
        #expect(firings.count == 1)
        if let first = firings.first {
            #expect(first - start >= 50_000_000, "fired after \(first - start) ns")
        }
        #expect(!timer.isActive)
        expectNoLeaks(loop)
    }

    @Test("a 1 ms periodic timer fires 10 times promptly and never ahead of its schedule", arguments: LoopWait.usable)
    func periodic(_ wait: LoopWait) throws {
        let loop = try makeLoop(waitingIn: wait)
        var firings: [UInt64] = []
        let start = MonotonicClock.nanoseconds()
        let timer = try loop.addTimer(every: .microseconds(1000)) { timer in
            firings.append(MonotonicClock.nanoseconds())
            if firings.count == 10 { timer.cancel() }
        }
        #expect(timer.intervalNanoseconds == 1_000_000)
        try spin(loop, seconds: 5, "10 firings") { firings.count >= 10 }
        try runLoop(loop, forMilliseconds: 20)
        #expect(firings.count == 10)
        #expect(!timer.isActive)
        if firings.count == 10 {
            #expect(firings[9] - start < 500_000_000, "10th firing after \(firings[9] - start) ns")
        }
        for (index, time) in firings.enumerated() {
            #expect(time - start >= UInt64(index + 1) * 1_000_000, "firing \(index + 1) after \(time - start) ns")
        }
    }

    @Test("timers added at 30, 10 and 20 ms fire in deadline order", arguments: LoopWait.usable)
    func deadlineOrder(_ wait: LoopWait) throws {
        let loop = try makeLoop(waitingIn: wait)
        var order: [Int] = []
        for milliseconds in [30, 10, 20] {
            try loop.addOneShotTimer(after: .microseconds(UInt64(milliseconds) * 1000)) { _ in order.append(milliseconds) }
        }
        try spin(loop, seconds: 5, "three timers") { order.count >= 3 }
        try runLoop(loop, forMilliseconds: 20)
        #expect(order == [10, 20, 30])
        expectNoLeaks(loop)
    }

    @Test("a periodic timer cancelled in its own callback fires once", arguments: LoopWait.usable)
    func cancelInOwnCallback(_ wait: LoopWait) throws {
        let loop = try makeLoop(waitingIn: wait)
        var firings = 0
        let timer = try loop.addTimer(every: .microseconds(1000)) { timer in
            firings += 1
            timer.cancel()
            timer.cancel()
        }
        try spin(loop, seconds: 5, "the first firing") { firings >= 1 }
        try runLoop(loop, forMilliseconds: 30)
        #expect(firings == 1)
        #expect(!timer.isActive)
        expectNoLeaks(loop)
    }

    @Test("a due timer cancelled by another timer's callback in the same pass never fires", arguments: LoopWait.usable)
    func cancelledByAnotherInSamePass(_ wait: LoopWait) throws {
        let loop = try makeLoop(waitingIn: wait)
        var firstFirings = 0
        var secondFirings = 0
        var second: EvplTimer?
        let first = try loop.addTimer(every: .microseconds(1000)) { timer in
            firstFirings += 1
            timer.cancel()
            second?.cancel()
        }
        second = try loop.addTimer(every: .microseconds(2000)) { _ in secondFirings += 1 }
        // Let both deadlines pass before the loop looks, so one pass finds both due.
        usleep(5000)
        let now = MonotonicClock.nanoseconds()
        #expect(first.deadline < second!.deadline)
        #expect(second!.deadline <= now)
        loop.runOnceWithoutBlocking()
        #expect(firstFirings == 1)
        #expect(secondFirings == 0)
        #expect(second?.isActive == false)
        try runLoop(loop, forMilliseconds: 20)
        #expect(firstFirings == 1)
        #expect(secondFirings == 0)
        expectNoLeaks(loop)
    }

    /// `runOnce` "may block ... at most until the next timer". A timer added
    /// between iterations (code driving `runOnce` by hand) must count too.
    @Test("a timer added between iterations bounds the very next wait", arguments: LoopWait.usable)
    func timerAddedBetweenIterations(_ wait: LoopWait) throws {
        let loop = try makeLoop(waitingIn: wait) { $0.spinNanoseconds = 0 }
        loop.runOnce()  // a fresh loop polls once, then decides to sleep: nothing to wait for
        #expect(!loop.isPolling)
        var firings = 0
        try loop.addOneShotTimer(after: .microseconds(10_000)) { _ in firings += 1 }
        expectRunOnceDoesNotSleep(loop, "a timer due in 10 ms")
        try spin(loop, seconds: 5, "the timer") { firings >= 1 }
        #expect(firings == 1)
        expectNoLeaks(loop)
    }

    @Test("an interval that is zero, negative, under a nanosecond or over 292 years is invalidArgument", arguments: LoopWait.usable)
    func badIntervals(_ wait: LoopWait) throws {
        let loop = try makeLoop(waitingIn: wait)
        for interval in [Duration.zero, .microseconds(-5), .nanoseconds(-1), .seconds(1) / 1_000_000_000_000, .seconds(10_000_000_000), .seconds(Int64.max)] {
            #expect {
                try loop.addTimer(every: interval) { _ in }
            } throws: { error in
                (error as? EvplError)?.code == .invalidArgument
            }
        }
        #expect { try loop.addOneShotTimer(after: .seconds(Int64.max)) { _ in } } throws: { ($0 as? EvplError)?.code == .invalidArgument }
        // A one-shot timer due now or in the past fires at the next pass.
        var fired = false
        try loop.addOneShotTimer(after: .seconds(-1)) { _ in fired = true }
        try spin(loop, seconds: 5, "the overdue timer") { fired }
        let timer = try loop.addTimer(every: .milliseconds(1500)) { _ in }
        #expect(timer.interval == .milliseconds(1500) && timer.intervalNanoseconds == 1_500_000_000)
        timer.cancel()
        expectNoLeaks(loop)
    }
}
