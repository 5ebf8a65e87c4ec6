import Evpl
import Synchronization
import Testing
#if canImport(Glibc)
import Glibc
#endif

@Suite("Doorbells and remotes")
struct DoorbellTests {
    @Test("a doorbell rung from another thread wakes a loop asleep in run() with no timers", arguments: LoopWait.usable)
    func wakesSleepingLoop(_ wait: LoopWait) throws {
        let loop = try makeLoop(waitingIn: wait) { $0.spinNanoseconds = 0 }
        var rings = 0
        var ringThreadMatches = false
        let loopThread = pthread_self()
        let doorbell = try loop.addDoorbell { _ in
            rings += 1
            ringThreadMatches = pthread_equal(pthread_self(), loopThread) != 0
            loop.stop()
        }
        let ringer = doorbell.ringer
        let sleepsBefore = loop.statistics.sleeps
        let start = MonotonicClock.nanoseconds()
        let remote = loop.remote
        let watchdog = Watchdog(seconds: 5) { remote.stop() }
        let ringerThread = TestThread {
            usleep(100_000)  // long enough for the loop to go to sleep
            ringer.ring()
        }
        loop.run()
        let elapsed = MonotonicClock.nanoseconds() - start
        watchdog.standDown()
        ringerThread.join()
        #expect(!watchdog.fired, "the doorbell did not wake the loop")
        #expect(rings == 1)
        #expect(ringThreadMatches)
        #expect(loop.statistics.sleeps > sleepsBefore, "the loop never slept")
        #expect(elapsed >= 100_000_000 && elapsed < 5_000_000_000)
        doorbell.remove()
        expectNoLeaks(loop)
    }

    @Test("two rings before the loop gets to them coalesce into one callback", arguments: LoopWait.usable)
    func ringsCoalesce(_ wait: LoopWait) throws {
        let loop = try makeLoop(waitingIn: wait)
        var rings = 0
        let doorbell = try loop.addDoorbell { _ in rings += 1 }
        let ringer = doorbell.ringer
        let ringerThread = TestThread {
            ringer.ring()
            ringer.ring()
        }
        ringerThread.join()
        try spin(loop, seconds: 5, "the doorbell") { rings >= 1 }
        try runLoop(loop, forMilliseconds: 20)
        #expect(rings == 1)
        #expect(doorbell.isActive)
        doorbell.remove()
        expectNoLeaks(loop)
    }

    @Test("a doorbell removed inside its own callback never fires again", arguments: LoopWait.usable)
    func removeInOwnCallback(_ wait: LoopWait) throws {
        let loop = try makeLoop(waitingIn: wait)
        var rings = 0
        let doorbell = try loop.addDoorbell { doorbell in
            rings += 1
            doorbell.remove()
            doorbell.remove()
        }
        let ringer = doorbell.ringer
        ringer.ring()
        try spin(loop, seconds: 5, "the doorbell") { rings >= 1 }
        #expect(!doorbell.isActive)
        let ringerThread = TestThread {
            for _ in 0..<3 {
                ringer.ring()
                usleep(2000)
            }
        }
        ringerThread.join()
        try runLoop(loop, forMilliseconds: 30)
        #expect(rings == 1)
        expectNoLeaks(loop)
    }

    @Test("EventLoopRemote.execute runs work on the loop's thread", arguments: LoopWait.usable)
    func remoteExecute(_ wait: LoopWait) throws {
        let loop = try makeLoop(waitingIn: wait)
        let loopThread = pthread_self()
        let runs = AtomicCounter()
        let onLoopThread = AtomicCounter()
        let remote = loop.remote
        let poster = TestThread {
            for _ in 0..<3 {
                remote.execute { _ in
                    runs.increment()
                    if pthread_equal(pthread_self(), loopThread) != 0 { onLoopThread.increment() }
                }
            }
        }
        poster.join()
        #expect(runs.value == 0, "work ran before the loop did")
        try spin(loop, seconds: 5, "the remote work") { runs.value >= 3 }
        try runLoop(loop, forMilliseconds: 10)
        #expect(runs.value == 3)
        #expect(onLoopThread.value == 3)
        expectNoLeaks(loop)
    }

    @Test("remote.stop() from another thread stops run()", arguments: LoopWait.usable)
    func remoteStop(_ wait: LoopWait) throws {
        let loop = try makeLoop(waitingIn: wait)
        var timedOut = false
        let guardTimer = try loop.addOneShotTimer(after: .microseconds(5_000_000)) { _ in
            timedOut = true
            loop.stop()
        }
        let remote = loop.remote
        let start = MonotonicClock.nanoseconds()
        let stopper = TestThread {
            usleep(100_000)
            remote.stop()
        }
        loop.run()
        let elapsed = MonotonicClock.nanoseconds() - start
        stopper.join()
        guardTimer.cancel()
        #expect(!timedOut)
        #expect(elapsed >= 100_000_000 && elapsed < 5_000_000_000, "run() returned after \(elapsed) ns")
        // The stop request was used up: run() works again afterwards.
        loop.wakeIfSleeping()
        var ticks = 0
        let ticker = try loop.addTimer(every: .microseconds(1000)) { timer in
            ticks += 1
            if ticks == 3 { loop.stop() }
        }
        loop.run()
        ticker.cancel()
        #expect(ticks == 3)
        expectNoLeaks(loop)
    }
}
