@testable import Evpl
import Testing

/// The hybrid wait's decision on a made-up clock: no sleeping, no timing.
@Suite("Hybrid wait policy")
struct HybridWaitTests {
    @Test("within the spin window after activity the loop polls, yielding only on passes that found nothing; from its end it sleeps, until the next timer or until woken; activity opens the window again")
    func spinWindow() {
        var wait = HybridWait(spinNanoseconds: 200_000, spinYields: true)
        func idle(at now: UInt64, timer: UInt64 = .max) -> HybridWait.Decision {
            wait.decide(now: now, active: false, hasWork: false, pinned: false, nextTimer: timer)
        }
        #expect(wait.decide(now: 1_000_000, active: true, hasWork: false, pinned: false, nextTimer: .max) == .spin(yield: false))
        #expect(idle(at: 1_100_000) == .spin(yield: true))
        #expect(idle(at: 1_199_999) == .spin(yield: true))
        #expect(idle(at: 1_200_000) == .sleep(until: nil))
        #expect(idle(at: 1_300_000, timer: 5_000_000) == .sleep(until: 5_000_000))
        #expect(wait.lastActivity == 1_000_000)
        #expect(wait.decide(now: 9_000_000, active: true, hasWork: false, pinned: false, nextTimer: 5_000_000) == .spin(yield: false))
        #expect(idle(at: 9_150_000, timer: 5_000_000) == .spin(yield: true))
        #expect(idle(at: 9_200_000, timer: 12_000_000) == .sleep(until: 12_000_000))
    }

    @Test("queued work polls and a pinned loop spins whatever the clock; with a spin window of 0 an idle loop sleeps at once; with yields off it spins without yielding")
    func workPinsAndSettings() {
        var wait = HybridWait(spinNanoseconds: 200_000, spinYields: true)
        #expect(wait.decide(now: 10_000_000, active: false, hasWork: true, pinned: false, nextTimer: .max) == .poll)
        #expect(wait.decide(now: 10_000_000, active: false, hasWork: false, pinned: true, nextTimer: .max) == .spin(yield: true))
        #expect(wait.decide(now: 10_000_000, active: true, hasWork: true, pinned: true, nextTimer: .max) == .poll)

        var never = HybridWait(spinNanoseconds: 0, spinYields: true)
        #expect(never.decide(now: 5, active: true, hasWork: false, pinned: false, nextTimer: 7) == .sleep(until: 7))
        #expect(never.decide(now: 6, active: false, hasWork: true, pinned: false, nextTimer: 7) == .poll)

        var busy = HybridWait(spinNanoseconds: 200_000, spinYields: false)
        #expect(busy.decide(now: 1_000, active: true, hasWork: false, pinned: false, nextTimer: .max) == .spin(yield: false))
        #expect(busy.decide(now: 2_000, active: false, hasWork: false, pinned: false, nextTimer: .max) == .spin(yield: false))
    }
}
