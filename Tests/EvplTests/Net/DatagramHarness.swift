@testable import Evpl
import Testing

/// One seeded random datagram scenario: bursts of datagrams of random sizes
/// from one endpoint to another on the same loop, with a receiver that
/// sometimes holds on to what it got, a small pool ceiling and random
/// stretches in which the loop does not run.
struct DatagramScenario: CustomStringConvertible {
    let seed: UInt64
    let backend: EvplProtocol.Backend
    let bufferSize: Int
    let poolBuffers: Int
    let datagrams: Int
    let maxSize: Int
    let holdPercent: Int

    init(seed: UInt64) {
        var random = SeededRandom(seed: seed)
        self.seed = seed
        backend = StreamCase.backends[random.next(in: 0...StreamCase.backends.count - 1)]
        bufferSize = [4096, 16_384, 65_536][random.next(in: 0...2)]
        // A receive needs room for the largest datagram at once, and both
        // endpoints (the sender is bound too) keep one ready.
        let receiveBuffers = (65_535 + bufferSize - 1) / bufferSize + 1
        poolBuffers = 2 * receiveBuffers + random.next(in: 2...24)
        datagrams = random.next(in: 1...300)
        maxSize = random.next(in: 0...2) == 0 ? min(bufferSize, 65_507) : random.next(in: 4...256)
        holdPercent = [0, 0, 30, 90][random.next(in: 0...3)]
    }

    var description: String {
        "seed \(seed): \(backend.rawValue), \(datagrams) datagrams of 4 to \(maxSize) bytes, \(poolBuffers) buffers of \(bufferSize), holding \(holdPercent)%"
    }
}

/// Runs `scenario`; returns what broke the model (empty when nothing did).
/// The model: every datagram sent arrives once, whole and unaltered, in
/// order (loopback keeps it), or is counted by the kernel as dropped; a send
/// the pool cannot take throws `.resourceExhausted` and is retried; nothing
/// is rejected; every buffer is back in the pool at the end.
func runDatagramScenario(_ scenario: DatagramScenario) throws -> [String] {
    var problems: [String] = []
    func check(_ condition: Bool, _ message: @autoclosure () -> String) {
        if !condition { problems.append(message()) }
    }
    var random = SeededRandom(seed: scenario.seed ^ 0x5eed)
    let loop = try makeLoop(bufferSize: scenario.bufferSize) {
        $0.poolMaxBytes = scenario.poolBuffers * scenario.bufferSize
        $0.poolIdleBytes = 0
    }
    let udp = EvplProtocol(.udp, backend: scenario.backend)
    var held: [IOVec] = []
    var nextExpected = 0
    var delivered = 0
    var holdRandom = SeededRandom(seed: scenario.seed ^ 0x401d)
    let receiver = try loop.bindDatagram(SocketAddress(host: "127.0.0.1", port: 0), protocol: udp) { _, bytes, _ in
        guard bytes.count >= 4 else {
            problems.append("a datagram of \(bytes.count) bytes")
            return
        }
        let sequence = Int(bytes.loadBigEndianUInt32())
        if sequence < nextExpected {
            problems.append("datagram \(sequence) after \(nextExpected - 1): duplicated or reordered")
        }
        nextExpected = sequence + 1
        let altered = bytes.withContiguousBytes { content in
            patternMismatch(in: UnsafeRawBufferPointer(rebasing: content[4...]), at: bodyOffset(sequence)) != nil
        }
        if altered { problems.append("datagram \(sequence) altered (\(bytes.count) bytes)") }
        delivered += 1
        if holdRandom.next(in: 1...100) <= scenario.holdPercent { held += bytes.retainedIOVecs() }
    }
    let sender = try loop.bindDatagram(SocketAddress(host: "127.0.0.1", port: 0), protocol: udp) { _, _, _ in }
    let datagram = UnsafeMutableRawBufferPointer.allocate(byteCount: max(4, scenario.maxSize), alignment: 8)
    defer { datagram.deallocate() }
    var sent = 0
    var exhausted = 0
    let deadline = MonotonicClock.nanoseconds() + 20_000_000_000
    while sent < scenario.datagrams && MonotonicClock.nanoseconds() < deadline {
        let burst = random.next(in: 1...32)
        for _ in 0..<burst where sent < scenario.datagrams {
            let size = random.next(in: 4...max(4, scenario.maxSize))
            datagram.storeBytes(of: UInt32(sent).bigEndian, toByteOffset: 0, as: UInt32.self)
            fillPattern(UnsafeMutableRawBufferPointer(rebasing: datagram[4..<size]), from: bodyOffset(sent))
            do throws(EvplError) {
                try sender.send(to: receiver.localAddress, copying: UnsafeRawBufferPointer(rebasing: datagram[0..<size]))
                sent += 1
            } catch {
                check(error.code == .resourceExhausted, "send \(sent): \(error)")
                exhausted += 1
                break
            }
        }
        for _ in 0..<random.next(in: 0...3) { loop.runOnceWithoutBlocking() }
        if random.next(in: 0...7) == 0 || exhausted > 0 && held.count > 0 {
            for iovec in held { iovec.release() }
            held.removeAll()
        }
    }
    check(sent == scenario.datagrams, "only \(sent) of \(scenario.datagrams) sent in 20 s")
    for iovec in held { iovec.release() }
    held.removeAll()
    var drops = 0
    let settle = MonotonicClock.nanoseconds() + 10_000_000_000
    var deliveredBefore = -1
    while MonotonicClock.nanoseconds() < settle {
        loop.runOnceWithoutBlocking()
        for iovec in held { iovec.release() }
        held.removeAll()
        // Reading /proc costs: only once deliveries have stopped.
        guard delivered == deliveredBefore && sender.queuedDatagrams == 0 else {
            deliveredBefore = delivered
            continue
        }
        drops = receiver.kernelReceiveDrops ?? -1
        if delivered + drops == sent { break }
    }
    check(delivered + drops == sent, "\(sent) sent, \(delivered) delivered, \(drops) dropped by the kernel")
    check(sender.rejectedSends == 0, "\(sender.rejectedSends) sends rejected")
    check(receiver.truncatedDatagrams == 0, "\(receiver.truncatedDatagrams) truncated")
    sender.close()
    receiver.close()
    for _ in 0..<3 { loop.runOnceWithoutBlocking() }
    for iovec in held { iovec.release() }
    let pool = loop.bufferPool
    check(pool.buffersInUse - pool.buffersLentToKernel == 0, "\(pool.buffersInUse - pool.buffersLentToKernel) buffers still referenced at teardown")
    return problems
}

/// Where in the pattern the bytes after a datagram's sequence number start:
/// keyed by it, so a datagram cut, mixed with another or altered does not match.
private func bodyOffset(_ sequence: Int) -> Int {
    sequence &* 7919
}

@Suite("Randomized datagram harness")
struct DatagramHarnessTests {
    /// A fifth as many scenarios as the stream harness runs (the same
    /// `EVPL_HARNESS_SCENARIOS` and `EVPL_HARNESS_SEED` drive both).
    @Test("random datagram scenarios: each datagram arrives once and whole, or the kernel counts its drop")
    func randomScenarios() {
        runSeededScenarios(defaultCount: 100, share: 0.2, seedOf: \.seed, DatagramScenario.init(seed:), runDatagramScenario)
    }
}
