import Evpl
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// Reads from a blocking socket until the end of stream or an error; returns
/// the bytes and the errno that ended it (0 for a clean end of stream).
private func readToEnd(_ fd: Int32, seconds: Int = 20) -> (bytes: Int, mismatch: Int?, error: Int32) {
    var timeout = timeval(tv_sec: seconds, tv_usec: 0)
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
    let chunk = UnsafeMutableRawBufferPointer.allocate(byteCount: 1 << 16, alignment: 16)
    defer { chunk.deallocate() }
    var total = 0
    var mismatch: Int?
    while true {
        let count = read(fd, chunk.baseAddress, chunk.count)
        if count == 0 { return (total, mismatch, 0) }
        if count < 0 { return (total, mismatch, errno == EINTR ? 0 : errno) }
        if mismatch == nil, let index = patternMismatch(in: UnsafeRawBufferPointer(rebasing: chunk[0..<count]), at: total) { mismatch = total + index }
        total += count
    }
}

@Suite("Graceful shutdown")
struct GracefulShutdownTests {
    @Test("a graceful pool shutdown delivers every queued reply, then the end of stream", arguments: StreamCase.backends)
    func deliversQueuedReplies(_ backend: EvplProtocol.Backend) throws {
        let server = try ThreadedEchoServer([(EvplProtocol(.tcp, backend: backend), try SocketAddress(host: "127.0.0.1", port: 0))])
        let fd = rawConnect(to: server.listeners[0].address)
        try #require(fd >= 0)
        // 2 MiB echoed while the client reads nothing: most of it waits in the server's queue.
        let total = 2 << 20
        try #require(rawWriteAll(fd, patternBytes(from: 0, count: total)))
        usleep(300_000)
        for listener in server.listeners { listener.close() }
        let report = ReportSlot()
        let stopper = TestThread { report.set(server.shutdownGracefully(timeout: .seconds(20))) }
        let outcome = readToEnd(fd)
        close(fd)
        stopper.join()
        #expect(outcome.error == 0, "the client saw errno \(outcome.error), not a clean end of stream")
        #expect(outcome.bytes == total && outcome.mismatch == nil, "\(outcome.bytes) of \(total) bytes back, mismatch \(String(describing: outcome.mismatch))")
        #expect(report.value == { var expected = ShutdownReport(); expected.finished = 1; return expected }())
    }

    @Test("with a linger, a keep-alive client that ignores the server's end of stream no longer holds the shutdown until its timeout: it ends after the linger, with every byte delivered",
          arguments: [nil, Duration.milliseconds(100)])
    func lingerEndsIdlePeers(linger: Duration?) throws {
        let server = try ThreadedEchoServer([(EvplProtocol(.inproc), try SocketAddress(inProcessName: "linger-\(UniqueName.next())"))])
        let loop = try makeLoop()
        var echoed = [0, 0]
        var inputClosed = [0, 0]
        for index in 0..<2 {
            let client = try loop.connect(to: server.listeners[0].address, protocol: EvplProtocol(.inproc)) { connection, event in
                switch event {
                case .connected: try? connection.send([UInt8](repeating: 7, count: 1000))
                case .received(let bytes): echoed[index] += bytes.count
                case .inputClosed: inputClosed[index] += 1
                default: break
                }
            }
            // The first client sits idle after the server's end of stream; the second finishes in turn.
            client.finishesWhenInputCloses = index == 1
        }
        try spin(loop, "both echoes") { echoed == [1000, 1000] }
        server.listeners[0].close()
        let report = ReportSlot()
        let started = MonotonicClock.nanoseconds()
        let stopper = TestThread { report.set(server.shutdownGracefully(timeout: .seconds(3), linger: linger)) }
        try spin(loop, "the shutdown") { report.value != nil }
        let elapsed = Double(MonotonicClock.nanoseconds() - started) / 1e9
        stopper.join()
        try spin(loop, "both clients to see the server's end of stream") { inputClosed == [1, 1] }
        if linger == nil {
            #expect(elapsed >= 2.9, "without a linger the idle client holds the shutdown until its timeout (\(elapsed) s)")
            #expect(report.value?.aborted == 0 && report.value?.finished == 2, "\(String(describing: report.value))")
        } else {
            #expect(elapsed < 1.5, "the linger ended the idle client after 100 ms of silence, not the 3 s timeout (\(elapsed) s)")
            #expect(report.value?.aborted == 0 && report.value?.finished == 2, "\(String(describing: report.value))")
        }
        loop.closeAll()
    }

    @Test("evpl echo on SIGTERM delivers the echo it has queued, then exits 0", arguments: StreamCase.backends)
    func echoTerminatesGracefully(_ backend: EvplProtocol.Backend) throws {
        let server = try EvplServer(["echo", "--protocol", "tcp", "--backend", cliName(backend), "--port", "0"])
        let fd = rawConnect(to: server.address)
        try #require(fd >= 0)
        let total = 2 << 20
        try #require(rawWriteAll(fd, patternBytes(from: 0, count: total)))
        usleep(300_000)
        kill(server.pid, SIGTERM)
        let outcome = readToEnd(fd)
        close(fd)
        #expect(outcome.error == 0 && outcome.bytes == total && outcome.mismatch == nil, "\(outcome)")
        #expect(server.terminate() == 0)
    }

    @Test("past the deadline, a connection whose peer does not read is closed abortively and reported", arguments: StreamCase.backends)
    func deadlineAborts(_ backend: EvplProtocol.Backend) throws {
        let server = try ThreadedEchoServer([(EvplProtocol(.tcp, backend: backend), try SocketAddress(host: "127.0.0.1", port: 0))])
        let fd = rawConnect(to: server.listeners[0].address)
        try #require(fd >= 0)
        defer { close(fd) }
        _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
        // Fill every buffer on the way: the server cannot deliver its queue.
        let chunk = [UInt8](repeating: 9, count: 1 << 16)
        for _ in 0..<100 {
            while chunk.withUnsafeBytes({ write(fd, $0.baseAddress, $0.count) }) > 0 {}
            usleep(10_000)
        }
        let start = MonotonicClock.nanoseconds()
        let report = server.shutdownGracefully(timeout: .milliseconds(300))
        let elapsed = MonotonicClock.nanoseconds() - start
        #expect(report.aborted == 1 && report.finished == 0, "\(report)")
        #expect(elapsed >= 290_000_000 && elapsed < 5_000_000_000, "took \(elapsed / 1_000_000) ms")
        _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK)
        let outcome = readToEnd(fd)
        #expect(outcome.error == ECONNRESET, "the peer of an aborted connection saw errno \(outcome.error)")
    }

    @Test("disconnected tells an orderly end (nil) from a local close (.aborted) and a peer reset (.connectionReset)",
          arguments: StreamCase.allCases)
    func disconnectReasons(_ streamCase: StreamCase) throws {
        let loop = try makeLoop()
        let listener = try Listener(address: streamCase.listenAddress(), protocol: streamCase.evplProtocol)
        var serverLogs: [EventLog] = []
        var serverConnections: [Connection] = []
        loop.attach(to: listener) { connection in
            let log = EventLog()
            serverLogs.append(log)
            serverConnections.append(connection)
            connection.handler = log.handle
        }
        // 1: orderly: the client finishes, the server finishes in turn.
        // 2: the client closes abortively.
        // 3: the server closes abortively; the client sees the reset.
        var clientLogs: [EventLog] = []
        for _ in 0..<3 {
            let log = EventLog()
            clientLogs.append(log)
            _ = try loop.connect(to: listener.address, protocol: streamCase.evplProtocol, log.handle)
        }
        try spin(loop, "three accepts") { serverConnections.count == 3 && clientLogs.allSatisfy { $0.connected == 1 } }
        // Accepts may come in any order: each client sends its index to find its partner.
        let order = try pairConnections(loop, clientLogs: clientLogs, serverLogs: serverLogs)
        order.client[0].finish()
        order.client[1].close()
        order.server[2].close()
        try spin(loop, "six disconnects") {
            clientLogs.allSatisfy { $0.disconnected == 1 } && serverLogs.allSatisfy { $0.disconnected == 1 }
        }
        #expect(order.clientLog[0].disconnectError == nil && order.serverLog[0].disconnectError == nil)
        #expect(order.clientLog[1].disconnectError?.code == .aborted, "\(String(describing: order.clientLog[1].disconnectError))")
        #expect(order.serverLog[2].disconnectError?.code == .aborted)
        // Only TCP has a reset; a Unix peer's abortive close reads as an end of stream.
        if streamCase.evplProtocol.transport == .tcp {
            #expect(order.serverLog[1].disconnectError?.code == .connectionReset, "\(String(describing: order.serverLog[1].disconnectError))")
            #expect(order.clientLog[2].disconnectError?.code == .connectionReset, "\(String(describing: order.clientLog[2].disconnectError))")
        }
        listener.close()
        expectNoLeaks(loop)
    }
}

/// Client and server ends matched up: each client sends its index, and the
/// server end that receives it is its partner.
private struct Pairs {
    var client: [Connection] = []
    var clientLog: [EventLog] = []
    var server: [Connection] = []
    var serverLog: [EventLog] = []
}

private func pairConnections(_ loop: EventLoop, clientLogs: [EventLog], serverLogs: [EventLog]) throws -> Pairs {
    var pairs = Pairs()
    for (index, log) in clientLogs.enumerated() {
        let connection = try #require(log.connection)
        try connection.send([UInt8(index)])
        pairs.client.append(connection)
        pairs.clientLog.append(log)
    }
    try spin(loop, "the index bytes") { serverLogs.allSatisfy { $0.received.count == 1 } }
    for index in clientLogs.indices {
        let log = try #require(serverLogs.first { $0.received == [UInt8(index)] })
        pairs.server.append(try #require(log.connection))
        pairs.serverLog.append(log)
    }
    return pairs
}

/// A report handed from a stopping thread to the test.
private final class ReportSlot: @unchecked Sendable {
    // Written once under the lock, read under it after the join.
    private var report: ShutdownReport?
    private let lock = PthreadLock()
    func set(_ value: ShutdownReport) { lock.locked { report = value } }
    var value: ShutdownReport? { lock.locked { report } }
}
