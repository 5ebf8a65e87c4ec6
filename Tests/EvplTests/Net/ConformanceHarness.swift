@testable import Evpl
@testable import EvplTLS
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// One randomized stream scenario, fully determined by its seed.
struct HarnessScenario: CustomStringConvertible {
    enum Ending: CustomStringConvertible {
        /// Each side finishes once it has queued all its bytes.
        case bothFinish
        /// One side closes abortively once it has queued this many bytes.
        case abort(server: Bool, afterQueued: Int)

        var description: String {
            switch self {
            case .bothFinish: return "both finish"
            case .abort(let server, let after): return "\(server ? "server" : "client") aborts after \(after) bytes"
            }
        }
    }

    let seed: UInt64
    let kind: StreamCase.AddressKind
    let backend: EvplProtocol.Backend
    let bufferSize: Int
    let ringEntries: Int
    /// Pool ceiling in buffers; `nil` for the default.
    let poolBuffers: Int?
    let socketBuffer: Int
    let clientBytes: Int
    let serverBytes: Int
    let maxChunk: Int
    /// Chance that a `received` event pauses receiving for a while.
    let pauseChance: Int  // in percent
    /// Whether each side keeps sending after the other's half-close
    /// (`finishesWhenInputCloses` off); otherwise it finishes at once.
    let serverKeepsOpen: Bool
    let clientKeepsOpen: Bool
    let ending: Ending
    /// Whether the stream runs TLS 1.3 (a self-signed identity made once).
    let tls: Bool

    init(seed: UInt64) {
        var random = SeededRandom(seed: seed)
        self.seed = seed
        kind = [StreamCase.AddressKind.tcp4, .unixPath, .unixAbstract, .inproc][random.next(in: 0...3)]
        let kernelBackend = StreamCase.backends[random.next(in: 0...(StreamCase.backends.count - 1))]
        backend = kind == .inproc ? .auto : kernelBackend
        bufferSize = [4096, 16384, 65536][random.next(in: 0...2)]
        ringEntries = 1 << random.next(in: 0...4)
        poolBuffers = random.next(in: 0...2) == 0 ? random.next(in: 16...64) : nil
        socketBuffer = random.next(in: 0...1) == 0 ? 4096 : 0
        // Mostly small transfers, some large, some empty.
        func size() -> Int {
            switch random.next(in: 0...9) {
            case 0: return 0
            case 1...5: return random.next(in: 1...65536)
            default: return random.next(in: 65537...(2 << 20))
            }
        }
        maxChunk = [1, 100, 4096, 65536, 1 << 20][random.next(in: 0...4)]
        tls = random.next(in: 0...2) == 0
        // Byte-at-a-time streams stay short (a debug build makes a million
        // sends slow), and so do TCP streams through 4 KiB socket buffers
        // (the kernel's zero-window probes pace them at tens of ms).
        let limit: Int
        if maxChunk < 4096 && tls {
            limit = 4096  // each tiny send is a record of its own, 23 bytes or more
        } else if maxChunk < 4096 || (socketBuffer > 0 && kind == .tcp4) {
            limit = 32768
        } else {
            limit = Int.max
        }
        clientBytes = min(size(), limit)
        serverBytes = min(size(), limit)
        pauseChance = [0, 5, 30][random.next(in: 0...2)]
        serverKeepsOpen = random.next(in: 0...1) == 0
        clientKeepsOpen = random.next(in: 0...1) == 0
        if random.next(in: 0...3) == 0 {
            let server = random.next(in: 0...1) == 0
            let total = server ? serverBytes : clientBytes
            ending = .abort(server: server, afterQueued: random.next(in: 0...max(0, total)))
        } else {
            ending = .bothFinish
        }
    }

    var config: EvplConfig {
        var config = EvplConfig()
        config.bufferSize = bufferSize
        config.buffersPerSlab = 8
        config.spinNanoseconds = 20_000
        config.ioUringBufferRingEntries = ringEntries
        if let poolBuffers { config.poolMaxBytes = poolBuffers * bufferSize }
        config.socketBufferBytes = socketBuffer
        return config
    }

    var description: String {
        "seed \(seed): \(kind.rawValue)\(tls ? "+tls" : "")/\(backend.rawValue), buffers \(bufferSize) B, ring \(ringEntries), pool \(poolBuffers.map(String.init) ?? "default"), socket buffers \(socketBuffer), client \(clientBytes) B, server \(serverBytes) B, chunks up to \(maxChunk), pauses \(pauseChance)%, keeps open: server \(serverKeepsOpen), client \(clientKeepsOpen), \(ending)"
    }
}

/// The TLS contexts harness scenarios share: a throwaway self-signed
/// identity for `localhost`, and a client that trusts exactly it.
enum HarnessTLS {
    static let contexts: Result<(server: TLSContext, client: TLSContext), EvplError> = Result { () throws(EvplError) in
        let identity = try TLSConfiguration.selfSignedIdentity(for: ["localhost"])
        return (try TLSContext(.server(certificateChain: identity.certificateChain, privateKey: identity.privateKey), role: .server),
                try TLSContext(.client(serverName: "localhost", trustRoots: .certificates(identity.certificateChain)), role: .client))
    }

    /// `base` over TLS in `role`.
    static func protocolFor(_ base: EvplProtocol, role: TLSContext.Role) throws -> EvplProtocol {
        let contexts = try contexts.get()
        return EvplProtocol(base.transport, backend: base.backend, tls: role == .server ? contexts.server : contexts.client)
    }
}

/// One end of a harness scenario: sends its pattern bytes in random chunks,
/// keeping its queue short, pauses receiving at random, and records
/// everything it sees for the model check.
final class HarnessPeer {
    let name: String
    let total: Int
    let maxChunk: Int
    let pauseChance: Int
    let queueLimit: Int
    let abortAfter: Int?
    var random: SeededRandom
    weak var connection: Connection?
    /// Bytes the library accepted from this side's sends.
    var queued = 0
    var received = 0
    /// Sends the pool refused (`.resourceExhausted`), retried later.
    var refusedSends = 0
    /// While set, ``pump()`` sends nothing (a test starts every end at once).
    var holdsSends = false
    var firstMismatch: Int?
    var connected = 0
    var disconnected = 0
    var disconnectError: EvplError?
    var eventsAfterDisconnect = 0
    var inputClosed = 0
    var finished = false
    var aborted = false
    var retryTimer: EvplTimer?
    var resumeTimer: EvplTimer?
    var socketInode: UInt64 = 0
    private let scratch: UnsafeMutableRawBufferPointer

    init(name: String, total: Int, maxChunk: Int, pauseChance: Int, queueLimit: Int, abortAfter: Int?, seed: UInt64) {
        self.name = name
        self.total = total
        self.maxChunk = maxChunk
        self.pauseChance = pauseChance
        self.queueLimit = queueLimit
        self.abortAfter = abortAfter
        self.random = SeededRandom(seed: seed)
        scratch = .allocate(byteCount: max(1, min(maxChunk, queueLimit)), alignment: 16)
    }

    deinit { scratch.deallocate() }

    func handle(_ connection: Connection, _ event: ConnectionEvent) {
        if disconnected > 0 { eventsAfterDisconnect += 1 }
        switch event {
        case .connected:
            connected += 1
            self.connection = connection
            // `sent` events drive the pump as the queue drains.
            connection.notifiesSent = true
            var status = stat()
            if fstat(connection.fd, &status) == 0 { socketInode = UInt64(status.st_ino) }
            pump()
        case .received(let bytes):
            bytes.forEachSegment { piece in
                if firstMismatch == nil, let index = patternMismatch(in: piece, at: received) { firstMismatch = received + index }
                received += piece.count
            }
            if pauseChance > 0 && random.next(in: 1...100) <= pauseChance && resumeTimer == nil {
                connection.pauseReceiving()
                let delay = UInt64(random.next(in: 50...3000))
                resumeTimer = try? connection.loop.addOneShotTimer(after: .microseconds(delay)) { [weak self] _ in
                    self?.resumeTimer = nil
                    self?.connection?.resumeReceiving()
                }
            }
        case .sent, .writable:
            pump()
        case .inputClosed:
            inputClosed += 1
        case .disconnected(let error):
            disconnected += 1
            disconnectError = error
            retryTimer?.cancel()
            resumeTimer?.cancel()
        }
    }

    /// Queues more bytes while the queue is short; finishes or aborts when due.
    func pump() {
        guard let connection, !connection.isClosed, !finished, !aborted, !holdsSends else { return }
        while queued < total && connection.queuedBytes < queueLimit {
            if let abortAfter, queued >= abortAfter { break }
            // Log-uniform chunk sizes: as many tiny sends as large ones.
            let scale = random.next(in: 0...(Int.bitWidth - 1 - maxChunk.leadingZeroBitCount))
            var length = min(random.next(in: (1 << scale)...min(maxChunk, (2 << scale) - 1)), total - queued, scratch.count)
            if let abortAfter { length = min(length, abortAfter - queued) }
            let piece = UnsafeMutableRawBufferPointer(rebasing: scratch[0..<length])
            fillPattern(piece, from: queued)
            do throws(EvplError) {
                try connection.send(copying: UnsafeRawBufferPointer(piece))
                queued += length
            } catch where error.code == .resourceExhausted {
                refusedSends += 1
                retryLater()
                return
            } catch {
                return  // finishing or closed: the model counts what was queued
            }
        }
        if let abortAfter, queued >= abortAfter {
            aborted = true
            connection.close()
        } else if queued == total {
            finished = true
            connection.finish()
        } else {
            retryLater()
        }
    }

    private func retryLater() {
        guard retryTimer == nil, let loop = connection?.loop else { return }
        retryTimer = try? loop.addOneShotTimer(after: .microseconds(200)) { [weak self] _ in
            self?.retryTimer = nil
            self?.pump()
        }
    }
}

/// Whether any descriptor of this process is the socket with inode `inode`.
private func socketStillOpen(inode: UInt64) -> Bool {
    guard inode != 0, let directory = opendir("/proc/self/fd") else { return false }
    defer { closedir(directory) }
    var target = [CChar](repeating: 0, count: 64)
    while let entry = readdir(directory) {
        let name = Probe.entryName(entry)
        guard Int32(name) != nil else { continue }
        let length = readlink("/proc/self/fd/\(name)", &target, target.count - 1)
        guard length > 0 else { continue }
        let link = String(decoding: target[0..<length].map { UInt8(bitPattern: $0) }, as: UTF8.self)
        if link == "socket:[\(inode)]" { return true }
    }
    return false
}

/// Runs one scenario on a fresh loop and returns what the model found wrong.
func runHarnessScenario(_ scenario: HarnessScenario) throws -> [String] {
    let loop = try EventLoop(config: scenario.config)
    let streamCase = StreamCase(kind: scenario.kind, backend: scenario.backend)
    let serverProtocol = scenario.tls ? try HarnessTLS.protocolFor(streamCase.evplProtocol, role: .server) : streamCase.evplProtocol
    let clientProtocol = scenario.tls ? try HarnessTLS.protocolFor(streamCase.evplProtocol, role: .client) : streamCase.evplProtocol
    let listener = try Listener(address: streamCase.listenAddress(), protocol: serverProtocol)
    defer { listener.close() }
    let poolBytes = (scenario.poolBuffers ?? 1 << 20) * scenario.bufferSize
    let queueLimit = max(1, min(4 << 20, poolBytes / 8))
    var abortServer: Int?
    var abortClient: Int?
    if case .abort(let server, let after) = scenario.ending {
        if server { abortServer = after } else { abortClient = after }
    }
    let server = HarnessPeer(name: "server", total: scenario.serverBytes, maxChunk: scenario.maxChunk, pauseChance: scenario.pauseChance,
                             queueLimit: queueLimit, abortAfter: abortServer, seed: scenario.seed &+ 1)
    let client = HarnessPeer(name: "client", total: scenario.clientBytes, maxChunk: scenario.maxChunk, pauseChance: scenario.pauseChance,
                             queueLimit: queueLimit, abortAfter: abortClient, seed: scenario.seed &+ 2)
    loop.attach(to: listener) { connection in
        connection.finishesWhenInputCloses = !scenario.serverKeepsOpen
        connection.handler = server.handle
    }
    let clientConnection = try loop.connect(to: listener.address, protocol: clientProtocol, client.handle)
    clientConnection.finishesWhenInputCloses = !scenario.clientKeepsOpen
    do {
        try spin(loop, seconds: 60, "both disconnects") { server.disconnected >= 1 && client.disconnected >= 1 }
    } catch {
        let pool = loop.bufferPool
        var state = "\(error); pool \(pool.buffersInUse) in use (\(pool.buffersLentToKernel) lent), \(loop.memoryWaiters.count) waiting for memory"
        for peer in [server, client] {
            state += "; \(peer.name): queued \(peer.queued)/\(peer.total), received \(peer.received), finished \(peer.finished)"
            if let connection = peer.connection {
                state += ", state \(connection.state), send queue \(connection.queuedBytes), receive queue \(connection.receiveQueue.count), pauses \(connection.receivePauses.rawValue), input closed \(connection.inputClosed)"
            }
        }
        return [state]
    }
    for _ in 0..<5 { loop.runOnceWithoutBlocking() }

    var problems: [String] = []
    func check(_ condition: Bool, _ message: @autoclosure () -> String) { if !condition { problems.append(message()) } }
    for (peer, other) in [(server, client), (client, server)] {
        if scenario.tls, case .abort = scenario.ending, peer.connected == 0 {
            // The abort can cut the handshake short: the reset discards the
            // client's Finished. That end then sees a typed error, no data.
            check(peer.disconnectError != nil && peer.received == 0, "\(peer.name): no handshake, yet \(peer.received) bytes and \(String(describing: peer.disconnectError))")
        } else {
            check(peer.connected == 1, "\(peer.name): \(peer.connected) connected events")
        }
        check(peer.disconnected == 1, "\(peer.name): \(peer.disconnected) disconnected events")
        check(peer.eventsAfterDisconnect == 0, "\(peer.name): \(peer.eventsAfterDisconnect) events after disconnected")
        check(peer.firstMismatch == nil, "\(peer.name): wrong byte at offset \(peer.firstMismatch ?? -1)")
        check(peer.received <= other.queued, "\(peer.name): received \(peer.received), more than the \(other.queued) queued")
        check(!socketStillOpen(inode: peer.socketInode), "\(peer.name): socket still open after disconnected")
    }
    switch scenario.ending {
    case .bothFinish:
        for (peer, other) in [(server, client), (client, server)] {
            check(peer.received == other.queued, "\(peer.name): received \(peer.received) of \(other.queued) bytes")
            check(peer.disconnectError == nil, "\(peer.name): \(String(describing: peer.disconnectError))")
            check(peer.inputClosed == 1, "\(peer.name): \(peer.inputClosed) inputClosed events")
        }
        // A side that finishes when the other does may stop short; one that keeps open sends everything.
        if scenario.clientKeepsOpen { check(client.queued == client.total, "client queued only \(client.queued) of \(client.total)") }
        if scenario.serverKeepsOpen { check(server.queued == server.total, "server queued only \(server.queued) of \(server.total)") }
    case .abort(let serverAborts, _):
        let (aborter, other) = serverAborts ? (server, client) : (client, server)
        // The other side may have ended the connection first, in order.
        guard aborter.aborted else { break }
        check(aborter.disconnectError?.code == .aborted, "\(aborter.name) aborted: \(String(describing: aborter.disconnectError))")
        if scenario.kind == .tcp4 && other.received < aborter.queued {
            // Bytes the aborting side had queued were dropped: the other side must know.
            check(other.disconnectError != nil, "\(other.name) got \(other.received) of \(aborter.queued) bytes and a clean end")
        }
    }
    if ProcessEnvironment.current()["EVPL_HARNESS_TIMES"] != nil { print("statistics: \(loop.statistics)") }
    loop.closeAll()
    for _ in 0..<3 { loop.runOnceWithoutBlocking() }
    let pool = loop.bufferPool
    check(pool.buffersInUse - pool.buffersLentToKernel == 0, "\(pool.buffersInUse - pool.buffersLentToKernel) buffers still referenced at teardown")
    return problems
}

/// Runs seeded scenarios: `EVPL_HARNESS_SCENARIOS` times `share` of them
/// (`defaultCount` without it), from `EVPL_HARNESS_SEED` or the clock. Each
/// failure is recorded with the line that replays it; five end the run.
/// With `EVPL_HARNESS_TIMES`, scenarios slower than 200 ms are printed.
func runSeededScenarios<Scenario: CustomStringConvertible>(
    defaultCount: Int, share: Double = 1, seedOf: (Scenario) -> UInt64,
    _ make: (UInt64) -> Scenario, _ run: (Scenario) throws -> [String]
) {
    let environment = ProcessEnvironment.current()
    let asked = environment["EVPL_HARNESS_SCENARIOS"].flatMap(Int.init)
    let count = max(1, asked.map { Int(Double($0) * share) } ?? defaultCount)
    let firstSeed = environment["EVPL_HARNESS_SEED"].flatMap(UInt64.init) ?? UInt64(MonotonicClock.nanoseconds() % 1_000_000_000)
    let replayCount = Int((1 / share).rounded(.up))
    var failures = 0
    for index in 0..<count {
        let scenario = make(firstSeed &+ UInt64(index))
        let problems: [String]
        let started = MonotonicClock.nanoseconds()
        defer {
            let elapsed = MonotonicClock.nanoseconds() - started
            if environment["EVPL_HARNESS_TIMES"] != nil && elapsed > 200_000_000 { print("slow \(elapsed / 1_000_000) ms: \(scenario)") }
        }
        do {
            problems = try run(scenario)
        } catch {
            problems = ["\(error)"]
        }
        if !problems.isEmpty {
            failures += 1
            let replay = "EVPL_HARNESS_SEED=\(seedOf(scenario)) EVPL_HARNESS_SCENARIOS=\(replayCount)"
            Issue.record(Comment(rawValue: "\(scenario)\n  replay: \(replay)\n  \(problems.prefix(8).joined(separator: "\n  "))"))
            if failures >= 5 { break }
        }
    }
}

@Suite("Randomized conformance harness")
struct ConformanceHarnessTests {
    /// `EVPL_HARNESS_SCENARIOS` sets how many (thousands for a soak);
    /// `EVPL_HARNESS_SEED` replays from a seed a failure printed.
    @Test("random scenarios over every stream protocol and backend, with and without TLS, keep the model: every byte in order, or a typed error")
    func randomScenarios() {
        runSeededScenarios(defaultCount: 500, seedOf: \.seed, HarnessScenario.init(seed:), runHarnessScenario)
    }
}
