import Evpl
import Testing
#if canImport(Glibc)
import Glibc
#endif

@Suite("Deferrals")
struct DeferralTests {
    @Test("arming twice before the loop runs gives exactly one callback", arguments: LoopWait.usable)
    func armTwice(_ wait: LoopWait) throws {
        let loop = try makeLoop(waitingIn: wait)
        var runs = 0
        let deferral = loop.makeDeferral { _ in runs += 1 }
        deferral.arm()
        deferral.arm()
        #expect(deferral.isArmed)
        loop.runOnceWithoutBlocking()
        #expect(runs == 1)
        #expect(!deferral.isArmed)
        for _ in 0..<5 { loop.runOnceWithoutBlocking() }
        #expect(runs == 1)
        expectNoLeaks(loop)
    }

    @Test("re-arming inside the callback gives exactly one more run, on the next iteration", arguments: LoopWait.usable)
    func rearmInCallback(_ wait: LoopWait) throws {
        let loop = try makeLoop(waitingIn: wait)
        var runs = 0
        var runIterations: [UInt64] = []
        let deferral = loop.makeDeferral { deferral in
            runs += 1
            runIterations.append(loop.statistics.iterations)
            if runs == 1 { deferral.arm() }
        }
        deferral.arm()
        loop.runOnceWithoutBlocking()
        #expect(runs == 1)
        #expect(deferral.isArmed)
        loop.runOnceWithoutBlocking()
        #expect(runs == 2)
        #expect(!deferral.isArmed)
        for _ in 0..<5 { loop.runOnceWithoutBlocking() }
        #expect(runs == 2)
        if runIterations.count == 2 { #expect(runIterations[1] == runIterations[0] + 1) }
        expectNoLeaks(loop)
    }

    @Test("a disarmed deferral never runs; disarming an idle one is harmless", arguments: LoopWait.usable)
    func disarm(_ wait: LoopWait) throws {
        let loop = try makeLoop(waitingIn: wait)
        var runs = 0
        let deferral = loop.makeDeferral { _ in runs += 1 }
        deferral.disarm()  // idle: nothing happens
        deferral.arm()
        deferral.disarm()
        #expect(!deferral.isArmed)
        for _ in 0..<5 { loop.runOnceWithoutBlocking() }
        #expect(runs == 0)
        // Still usable afterwards.
        deferral.arm()
        loop.runOnceWithoutBlocking()
        #expect(runs == 1)
        expectNoLeaks(loop)
    }

    @Test("arm, disarm, arm: a deferral that re-arms itself still runs once per iteration", arguments: LoopWait.usable)
    func rearmAfterDisarm(_ wait: LoopWait) throws {
        let loop = try makeLoop(waitingIn: wait)
        var runsPerIteration: [UInt64: Int] = [:]
        var runs = 0
        let deferral = loop.makeDeferral { deferral in
            runs += 1
            runsPerIteration[loop.statistics.iterations, default: 0] += 1
            if runs < 4 { deferral.arm() }
        }
        deferral.arm()
        deferral.disarm()
        deferral.arm()
        loop.runOnceWithoutBlocking()
        #expect(runs == 1, "ran \(runs) times in the first iteration")
        for _ in 0..<10 { loop.runOnceWithoutBlocking() }
        #expect(runs == 4)
        #expect(runsPerIteration.values.allSatisfy { $0 == 1 }, "runs per iteration: \(runsPerIteration.sorted { $0.key < $1.key })")
        expectNoLeaks(loop)
    }

    @Test("an armed deferral keeps runOnce from blocking on a loop with nothing else to do", arguments: LoopWait.usable)
    func armedDeferralPreventsSleep(_ wait: LoopWait) throws {
        let loop = try makeLoop(waitingIn: wait) { $0.spinNanoseconds = 0 }
        // A fresh loop polls on its first pass; after it, with no spin window,
        // no timers and no sources, the next wait would be for ever.
        loop.runOnce()
        #expect(!loop.isPolling)
        var runs = 0
        let deferral = loop.makeDeferral { _ in runs += 1 }
        deferral.arm()
        expectRunOnceDoesNotSleep(loop, "a deferral armed")
        #expect(runs == 1)
        expectNoLeaks(loop)
    }
}
