import Evpl
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// CPU time (user + system) the calling thread has used, in nanoseconds.
private func threadCPUNanoseconds() -> UInt64 {
    var usage = rusage()
    // RUSAGE_THREAD (1): the calling thread only, not the whole test process.
    let status = getrusage(__rusage_who_t(1), &usage)
    precondition(status == 0, "getrusage failed")
    func nanoseconds(_ time: timeval) -> UInt64 { UInt64(time.tv_sec) * 1_000_000_000 + UInt64(time.tv_usec) * 1000 }
    return nanoseconds(usage.ru_utime) + nanoseconds(usage.ru_stime)
}

@Suite("Idle loop")
struct IdleTests {
    @Test("an idle loop with the default spin settings uses under 5% of a core over one second", arguments: LoopWait.usable)
    func idleCPU(_ wait: LoopWait) throws {
        let loop = try makeLoop(waitingIn: wait) { $0 = EvplConfig() }
        var timedOut = false
        try loop.addOneShotTimer(after: .microseconds(1_000_000)) { _ in loop.stop() }
        let guardTimer = try loop.addOneShotTimer(after: .microseconds(10_000_000)) { _ in
            timedOut = true
            loop.stop()
        }
        let wallStart = MonotonicClock.nanoseconds()
        let cpuStart = threadCPUNanoseconds()
        loop.run()
        let cpu = threadCPUNanoseconds() - cpuStart
        let wall = MonotonicClock.nanoseconds() - wallStart
        guardTimer.cancel()
        #expect(!timedOut)
        #expect(wall >= 1_000_000_000)
        #expect(Double(cpu) < 0.05 * Double(wall), "used \(cpu / 1000) us of CPU in \(wall / 1000) us")
        #expect(loop.statistics.sleeps >= 1)
        expectNoLeaks(loop)
    }

    @Test("an adaptive loop woken every millisecond by a timer sleeps again at once after each: a timer is not an arrival to spin for", arguments: LoopWait.usable)
    func adaptiveTimerWakes(_ wait: LoopWait) throws {
        let loop = try makeLoop(waitingIn: wait) { $0.waitPolicy = .adaptive }
        var ticks = 0
        let ticker = try loop.addTimer(every: .milliseconds(1)) { _ in ticks += 1 }
        try loop.addOneShotTimer(after: .milliseconds(300)) { _ in loop.stop() }
        loop.run()
        ticker.cancel()
        #expect(ticks >= 100, "\(ticks) ticks")
        // One polling pass a tick (the one that fires it). Were the ticks
        // arrivals, their steady pace would have the loop wake before each
        // and spin until it came.
        let passesPerTick = Double(loop.statistics.spins) / Double(max(ticks, 1))
        #expect(passesPerTick <= 2, "\(passesPerTick) polling passes a tick")
        expectNoLeaks(loop)
    }

    @Test("pin() keeps the very next runOnce from sleeping", arguments: LoopWait.usable)
    func pinTakesEffectAtOnce(_ wait: LoopWait) throws {
        let loop = try makeLoop(waitingIn: wait) { $0.spinNanoseconds = 0 }
        loop.runOnce()  // a fresh loop polls once, then decides to sleep: nothing to wait for
        #expect(!loop.isPolling)
        loop.pin()
        #expect(loop.isPolling, "isPolling still false after pin()")
        expectRunOnceDoesNotSleep(loop, "the loop pinned")
        loop.unpin()
        expectNoLeaks(loop)
    }
}
