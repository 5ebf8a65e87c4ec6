@testable import Evpl
import Testing

/// The psync workers wait for jobs as the loop's wait policy says.
@Suite("psync worker waits")
struct PSyncWorkerWaitTests {
    /// Writes 4 KiB `count` times at depth 1 on a loop with `policy`, the
    /// next write `every` nanoseconds after the last completed, and returns
    /// the workers' sleeps and wasted spin. (What spinning buys when jobs
    /// come back to back depends on scheduling, and is measured by
    /// `Benchmarks/block-wait.sh`, not here.)
    private func writes(_ count: Int, every interval: UInt64, policy: WaitPolicy) throws -> (sleeps: Int, wastedSpinNanoseconds: UInt64) {
        let loop = try makeLoop { $0.waitPolicy = policy }
        let file = ScratchFile()
        let device = try loop.openBlockDevice(file.path, engine: .psync, create: 1 << 20, queueDepth: 1)
        var buffer = try loop.bufferPool.allocate()
        buffer.length = 4096
        var completed = 0
        var failures = 0
        device.handler = { device, completion in
            completed += 1
            if completion.error != nil { failures += 1 }
            guard completed < count else { return }
            _ = try? loop.addOneShotTimer(after: .nanoseconds(Int64(interval))) { _ in
                device.write(buffer, at: UInt64(completed % 256) * 4096, tag: UInt64(completed))
            }
        }
        device.write(buffer, at: 0, tag: 0)
        try spin(loop, seconds: 60, "\(count) writes") { completed == count }
        #expect(failures == 0)
        let waits = try #require(device.psyncWorkerWaits)
        device.close()
        buffer.release()
        return waits
    }

    @Test("jobs 2 ms apart: the adaptive workers learn that spinning for the next one is waste; the fixed window spins 50 us after each")
    func trickle() throws {
        let fixed = try writes(40, every: 2_000_000, policy: .fixed)
        let adaptive = try writes(40, every: 2_000_000, policy: .adaptive)
        let never = try writes(40, every: 2_000_000, policy: .sleep)
        #expect(fixed.wastedSpinNanoseconds >= 39 * PSyncBlockDriver.workerSpinNanoseconds, "fixed \(fixed)")
        #expect(adaptive.wastedSpinNanoseconds * 4 < fixed.wastedSpinNanoseconds, "adaptive \(adaptive) fixed \(fixed)")
        #expect(never.wastedSpinNanoseconds == 0 && never.sleeps >= 40, "sleep \(never)")
    }
}
