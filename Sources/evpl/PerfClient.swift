import Evpl
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// What `evpl perf client` measures.
enum PerfMode: String, Sendable, CaseIterable {
    /// Request/response: each message of `size` bytes is echoed back; up to
    /// `depth` in flight per connection; latency is per round trip.
    case pingpong
    /// One-way: the client keeps the connection full of `size`-byte messages
    /// and the server discards them; throughput only.
    case stream
    /// Connection set-up: each of the `connections` slots opens a
    /// connection (under TLS, a full handshake), makes one round trip of
    /// `size` bytes, finishes it (close_notify under TLS) and opens the
    /// next while that one closes. An operation is one such connection;
    /// its latency runs from the connect to the echo.
    case handshake
}

/// A perf run's parameters.
struct PerfPlan: Sendable {
    var evplProtocol: EvplProtocol
    var address: SocketAddress
    var mode: PerfMode
    var size: Int
    var depth: Int
    var connections: Int
    var threads: Int
    var durationSeconds: Double
    var config: EvplConfig? = nil
    var cpu: Int? = nil
    /// Drive stream connections with callbacks or with a task each.
    var api: API = .callbacks
    /// Requests a second in all, sent on a schedule whatever the replies
    /// do (open loop, pingpong only); `nil` keeps `depth` in flight instead.
    var rate: Double? = nil
    /// How the scheduled requests are spaced.
    var arrivals: Arrivals = .fixed
    /// The server's process, whose CPU time the result reports.
    var serverPID: Int32? = nil
}

/// A perf run's outcome.
struct PerfResult: Sendable {
    var operations: UInt64
    var bytes: UInt64
    var seconds: Double
    var latency: LatencyHistogram
    /// CPU time this process and the server's used during the run, when known.
    var clientCPUNanoseconds: UInt64? = nil
    var serverCPUNanoseconds: UInt64? = nil

    var operationsPerSecond: Double { Double(operations) / seconds }
    var bytesPerSecond: Double { Double(bytes) / seconds }
    var gigabitsPerSecond: Double { bytesPerSecond * 8 / 1e9 }
}

/// A thread's running totals and its latencies since the last progress
/// line, which it publishes and another thread reads for progress lines.
final class ProgressCounter: Sendable {
    let operations = Atomic<UInt64>(0)
    let bytes = Atomic<UInt64>(0)
    /// Round trips published by the loop thread and not yet reported.
    let latency = Locked(LatencyHistogram())
}

/// One second of a perf run, for a live progress line.
struct PerfProgress {
    var second: Int
    var operationsPerSecond: Double
    var bytesPerSecond: Double
    /// The 99th percentile of the round trips completed in this second, in
    /// nanoseconds; 0 in stream mode.
    var p99: UInt64
}

/// Runs the client side of a perf measurement on a pool of loop threads.
enum PerfClient {
    /// Runs `plan`; `progress`, when given, hears about each second of it.
    static func run(_ plan: PerfPlan, progress: ((PerfProgress) -> Void)? = nil) throws(EvplError) -> PerfResult {
        guard plan.size >= 1, plan.depth >= 1, plan.connections >= 1, plan.threads >= 1, plan.durationSeconds > 0 else {
            throw EvplError(.invalidArgument, operation: "perf", context: "size, depth, connections, threads and duration must be positive")
        }
        if plan.mode != .pingpong && !plan.evplProtocol.isStream {
            throw EvplError(.invalidArgument, operation: "perf", context: "\(plan.mode) mode needs a stream protocol (tcp or unix)")
        }
        if plan.mode == .handshake && plan.api == .async {
            throw EvplError(.invalidArgument, operation: "perf", context: "handshake mode runs with callbacks only")
        }
        if plan.api == .async && !plan.evplProtocol.isStream {
            throw EvplError(.invalidArgument, operation: "perf", context: "the async API drives stream protocols (tcp, unix)")
        }
        if let rate = plan.rate, !(rate > 0) || plan.mode != .pingpong || plan.api != .callbacks {
            throw EvplError(.invalidArgument, operation: "perf", context: "--rate needs a positive rate, pingpong mode and the callbacks API")
        }
        if !plan.evplProtocol.isStream && plan.size > 65_000 {
            throw EvplError(.invalidArgument, operation: "perf", context: "udp messages are at most 65000 bytes")
        }
        let counters = (0..<plan.threads).map { _ in ProgressCounter() }
        let totals = Locked(PerfResult(operations: 0, bytes: 0, seconds: 0, latency: LatencyHistogram()))
        let failure = Locked<EvplError?>(nil)
        let pool = try EventLoopThreadPool<PerfClientThread>(
            count: plan.threads,
            config: plan.config,
            loopConfig: { index in LoopConfig(name: "evpl-cli-\(index)", cpuAffinity: plan.cpu.map { [$0] }) }
        ) { loop, index in
            let share = plan.connections / plan.threads + (index < plan.connections % plan.threads ? 1 : 0)
            let thread = PerfClientThread(loop: loop, plan: plan, counter: counters[index])
            thread.onFailure = { error in failure.withLock { if $0 == nil { $0 = error } } }
            do throws(EvplError) {
                try thread.open(connections: share, rateShare: Double(share) / Double(plan.connections))
            } catch {
                failure.withLock { $0 = error }
            }
            return thread
        } onStop: { _, thread in
            thread.finish()
            totals.withLock { total in
                total.operations += thread.operations
                total.bytes += thread.bytes
                total.latency.merge(thread.latency)
            }
        }
        let clientCPUAtStart = ProcessCPU.nanoseconds(of: getpid())
        let serverCPUAtStart = plan.serverPID.flatMap { ProcessCPU.nanoseconds(of: $0) }
        let start = MonotonicClock.nanoseconds()
        let end = start + UInt64(plan.durationSeconds * 1e9)
        var lastReport = start
        var lastOperations: UInt64 = 0
        var lastBytes: UInt64 = 0
        var second = 0
        var window = LatencyHistogram()
        while true {
            let now = MonotonicClock.nanoseconds()
            if now >= end { break }
            if let error = failure.withLock({ $0 }) {
                pool.stop()
                throw error
            }
            usleep(UInt32(min(20_000, (end - now) / 1000 + 1)))
            let after = MonotonicClock.nanoseconds()
            if let progress, after - lastReport >= 1_000_000_000 {
                second += 1
                let operations = counters.reduce(0) { $0 + $1.operations.load(ordering: .relaxed) }
                let bytes = counters.reduce(0) { $0 + $1.bytes.load(ordering: .relaxed) }
                let seconds = Double(after - lastReport) / 1e9
                for counter in counters {
                    counter.latency.withLock { published in
                        window.merge(published)
                        published.reset()
                    }
                }
                progress(PerfProgress(second: second, operationsPerSecond: Double(operations - lastOperations) / seconds,
                                      bytesPerSecond: Double(bytes - lastBytes) / seconds, p99: window.value(atQuantile: 0.99)))
                window.reset()
                lastOperations = operations
                lastBytes = bytes
                lastReport = after
            }
        }
        let elapsed = Double(MonotonicClock.nanoseconds() - start) / 1e9
        let serverCPUAtEnd = plan.serverPID.flatMap { ProcessCPU.nanoseconds(of: $0) }
        let clientCPUAtEnd = ProcessCPU.nanoseconds(of: getpid())
        pool.stop()
        if let error = failure.withLock({ $0 }) { throw error }
        var result = totals.withLock { $0 }
        result.seconds = elapsed
        if let before = clientCPUAtStart, let after = clientCPUAtEnd { result.clientCPUNanoseconds = after - before }
        if let before = serverCPUAtStart, let after = serverCPUAtEnd, after >= before { result.serverCPUNanoseconds = after - before }
        return result
    }
}

/// One client thread's connections and tallies.
final class PerfClientThread {
    let loop: EventLoop
    let plan: PerfPlan
    let counter: ProgressCounter
    var operations: UInt64 = 0
    var bytes: UInt64 = 0
    /// Every round trip up to the last publication.
    var latency = LatencyHistogram()
    /// Round trips since the last publication.
    private var recent = LatencyHistogram()
    private var publisher: EvplTimer?
    private let payload: UnsafeMutableRawBufferPointer
    private var streamPayload: [IOVec] = []
    private var flows: [PerfFlow] = []
    /// The open-loop schedule (``PerfPlan/rate``), its share of the rate,
    /// the loop pass that sends what falls due, and whose turn is next.
    private var schedule: PacedSchedule?
    private var pacer: Deferral?
    private var nextFlow = 0
    /// Hears why a connection ended before the run did (refused, reset,
    /// a TLS handshake that failed); the pool's own stop is not reported.
    var onFailure: (EvplError) -> Void = { _ in }

    init(loop: EventLoop, plan: PerfPlan, counter: ProgressCounter) {
        self.loop = loop
        self.plan = plan
        self.counter = counter
        payload = .allocate(byteCount: plan.size, alignment: 64)
        for index in 0..<plan.size { payload[index] = UInt8(truncatingIfNeeded: index) }
    }

    deinit {
        payload.deallocate()
    }

    func open(connections: Int, rateShare: Double) throws(EvplError) {
        publisher = try loop.addTimer(every: Self.publishInterval) { [unowned self] _ in publishLatency() }
        if let rate = plan.rate, rateShare > 0 {
            // The client polls, so that its own wake-ups do not delay the
            // schedule: the latencies measured are the server's.
            loop.pin()
            schedule = PacedSchedule(rate: rate * rateShare, arrivals: plan.arrivals, start: MonotonicClock.nanoseconds(),
                                     seed: UInt64(truncatingIfNeeded: ObjectIdentifier(self).hashValue))
            let pacer = loop.makeDeferral { [unowned self] deferral in
                sendDueRequests()
                deferral.arm()
            }
            pacer.arm()
            self.pacer = pacer
        }
        if plan.mode == .stream {
            var remaining = plan.size
            while remaining > 0 {
                var iovec = try loop.bufferPool.allocate()
                iovec.length = min(remaining, iovec.length)
                for index in 0..<iovec.length { iovec.bytes[index] = UInt8(truncatingIfNeeded: index) }
                streamPayload.append(iovec)
                remaining -= iovec.length
            }
        }
        for _ in 0..<connections {
            let flow = PerfFlow(thread: self)
            flows.append(flow)
            if plan.api == .async {
                let onLoop = OnLoop(value: flow)
                Task(executorPreference: loop.executor) { await onLoop.value.run() }
            } else if plan.evplProtocol.isStream {
                try flow.connect()
            } else {
                let local = try SocketAddress(host: plan.address.description.hasPrefix("[") ? "::1" : "127.0.0.1", port: 0)
                let endpoint = try loop.bindDatagram(local, protocol: plan.evplProtocol) { [unowned flow] endpoint, bytes, _ in
                    flow.datagramReceived(endpoint, bytes)
                }
                flow.endpoint = endpoint
                if plan.rate == nil {
                    for _ in 0..<plan.depth { flow.sendDatagram(endpoint) }
                }
            }
        }
    }

    /// Sends every request whose scheduled time has come, each on the
    /// next connection that is up, stamped with its scheduled time.
    private func sendDueRequests() {
        guard var schedule else { return }
        let now = MonotonicClock.nanoseconds()
        while schedule.next <= now {
            for _ in 0..<flows.count {
                let flow = flows[nextFlow]
                nextFlow = (nextFlow + 1) % flows.count
                if flow.sendScheduled(at: schedule.next) { break }
            }
            schedule.advance()
        }
        self.schedule = schedule
    }

    func finish() {
        publisher?.cancel()
        pacer = nil
        publishLatency()
        for flow in flows { flow.endpoint?.close() }
        for iovec in streamPayload { iovec.release() }
        streamPayload.removeAll()
    }

    /// How often the loop thread hands its recent round trips to the
    /// progress reporter: often enough that a progress line's window is
    /// within this of one second, rarely enough to cost nothing.
    static let publishInterval = Duration.milliseconds(200)

    /// Folds the recent round trips into the run's total and the progress
    /// reporter's window, and starts a new recent window.
    private func publishLatency() {
        guard recent.count > 0 else { return }
        latency.merge(recent)
        counter.latency.withLock { $0.merge(recent) }
        recent.reset()
    }

    @inline(__always)
    func recordLatency(_ nanoseconds: UInt64) {
        recent.record(nanoseconds)
    }

    @inline(__always)
    func recordOperation(bytes count: Int) {
        operations &+= 1
        bytes &+= UInt64(count)
        counter.operations.store(operations, ordering: .relaxed)
        counter.bytes.store(bytes, ordering: .relaxed)
    }

    /// One connection's (or UDP endpoint's) traffic.
    final class PerfFlow {
        unowned let thread: PerfClientThread
        var endpoint: DatagramEndpoint?
        /// When each request in flight was sent (or scheduled), oldest at `head`.
        private var sentAt: [UInt64]
        private var head = 0
        private var inFlight = 0
        private var pendingBytes = 0
        /// The connection once it is up (paced mode sends on it from the schedule).
        private var connection: Connection?
        /// Requests go out on the thread's schedule, not when replies come.
        private let paced: Bool

        init(thread: PerfClientThread) {
            self.thread = thread
            paced = thread.plan.rate != nil
            sentAt = Array(repeating: 0, count: thread.plan.rate == nil ? thread.plan.depth : 1024)
        }

        /// Sends one scheduled request, stamped with the time it was due;
        /// false when the flow cannot send (not connected yet, or gone).
        func sendScheduled(at scheduled: UInt64) -> Bool {
            if let endpoint {
                try? endpoint.send(to: thread.plan.address, copying: UnsafeRawBufferPointer(thread.payload))
            } else if let connection, !connection.isClosed {
                do { try connection.send(copying: UnsafeRawBufferPointer(thread.payload)) } catch { return false }
            } else {
                return false
            }
            stamp(at: scheduled)
            return true
        }

        /// Opens the flow's stream connection; in handshake mode, the
        /// round trip it measures starts here.
        func connect() throws(EvplError) {
            let plan = thread.plan
            if plan.mode == .handshake { stamp() }
            _ = try thread.loop.connect(to: plan.address, protocol: plan.evplProtocol) { [unowned self] connection, event in
                handle(connection, event)
            }
        }

        func handle(_ connection: Connection, _ event: ConnectionEvent) {
            switch event {
            case .connected:
                let plan = thread.plan
                do {
                    try connection.send(PerfHandshake.bytes(plan.mode == .stream ? PerfHandshake.stream : PerfHandshake.ping))
                    switch plan.mode {
                    case .stream: try fill(connection)
                    case .pingpong where paced: self.connection = connection
                    case .pingpong: for _ in 0..<plan.depth { try sendRequest(connection) }
                    case .handshake: try connection.send(copying: UnsafeRawBufferPointer(thread.payload))
                    }
                } catch {
                    connection.close()
                }
            case .received(let bytes):
                pendingBytes += bytes.count
                let size = thread.plan.size
                if thread.plan.mode == .handshake {
                    guard pendingBytes >= size else { return }
                    pendingBytes = 0
                    completeRequest()
                    connection.finish()
                    do { try connect() } catch { thread.onFailure(error) }
                    return
                }
                while pendingBytes >= size {
                    pendingBytes -= size
                    completeRequest()
                    if paced { continue }
                    do { try sendRequest(connection) } catch { connection.close() }
                }
            case .writable:
                do { try fill(connection) } catch { connection.close() }
            case .disconnected(let error?) where error.code != .aborted:
                thread.onFailure(error)
            case .sent, .inputClosed, .disconnected:
                break
            }
        }

        private func fill(_ connection: Connection) throws(EvplError) {
            let window = max(1 << 20, 4 * thread.plan.size)
            while connection.queuedBytes < window {
                for iovec in thread.streamPayload {
                    iovec.retain()
                    try connection.send(taking: iovec)
                }
                thread.recordOperation(bytes: thread.plan.size)
            }
        }

        @inline(__always)
        private func sendRequest(_ connection: Connection) throws(EvplError) {
            try connection.send(copying: UnsafeRawBufferPointer(thread.payload))
            stamp()
        }

        /// The flow as a task on the loop: the same traffic through the
        /// async API. It ends when the pool stops and closes its connection.
        func run() async {
            let plan = thread.plan
            do throws(EvplError) {
                let connection = try await thread.loop.connect(to: plan.address, protocol: plan.evplProtocol)
                try await connection.write(PerfHandshake.bytes(plan.mode == .stream ? PerfHandshake.stream : PerfHandshake.ping))
                let payload = UnsafeRawBufferPointer(thread.payload)
                if plan.mode == .stream {
                    while true {
                        for iovec in thread.streamPayload {
                            iovec.retain()
                            try await connection.write(taking: iovec)
                        }
                        thread.recordOperation(bytes: plan.size)
                    }
                }
                for _ in 0..<plan.depth {
                    try await connection.write(copying: payload)
                    stamp()
                }
                while let bytes = try await connection.receive() {
                    pendingBytes += bytes.count
                    while pendingBytes >= plan.size {
                        pendingBytes -= plan.size
                        completeRequest()
                        try await connection.write(copying: payload)
                        stamp()
                    }
                }
            } catch {
                // The pool stopping closes the connection under the flow.
                if error.code != .aborted { thread.onFailure(error) }
            }
        }

        func sendDatagram(_ endpoint: DatagramEndpoint) {
            let address = thread.plan.address
            try? endpoint.send(to: address, copying: UnsafeRawBufferPointer(thread.payload))
            stamp()
        }

        func datagramReceived(_ endpoint: DatagramEndpoint, _ bytes: ReceivedBytes) {
            guard inFlight > 0 else { return }
            completeRequest()
            if !paced { sendDatagram(endpoint) }
        }

        @inline(__always)
        private func stamp(at time: UInt64 = MonotonicClock.nanoseconds()) {
            if inFlight == sentAt.count {
                // Paced requests outrun the replies: twice the room, oldest first.
                sentAt = (0..<inFlight).map { sentAt[(head + $0) % inFlight] } + Array(repeating: 0, count: inFlight)
                head = 0
            }
            sentAt[(head + inFlight) % sentAt.count] = time
            inFlight += 1
        }

        @inline(__always)
        private func completeRequest() {
            let now = MonotonicClock.nanoseconds()
            thread.recordLatency(now &- sentAt[head])
            head = (head + 1) % sentAt.count
            inFlight -= 1
            thread.recordOperation(bytes: thread.plan.size)
        }
    }
}
