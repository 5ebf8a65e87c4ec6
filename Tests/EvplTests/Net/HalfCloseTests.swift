import Evpl
import Synchronization
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// An echo server on its own loop thread, as `evpl echo` runs it: every
/// received byte is sent back by copy.
final class ThreadedEchoServer: Sendable {
    let listeners: [Listener]
    private let pool: EventLoopThreadPool<Void>
    /// The most pool buffers the server's loop held at once (sampled on each receive).
    let peakBuffers = AtomicCounter()
    /// Send failures the server saw.
    let sendFailures = AtomicCounter()
    /// Connections that ended in order, and with an error.
    let orderlyEnds = AtomicCounter()
    let failedEnds = AtomicCounter()

    init(_ evplProtocols: [(EvplProtocol, SocketAddress)], configure: @Sendable (inout EvplConfig) -> Void = { _ in }) throws {
        var config = EvplConfig()
        config.spinNanoseconds = 50_000
        configure(&config)
        let listeners = try evplProtocols.map { try Listener(address: $0.1, protocol: $0.0) }
        self.listeners = listeners
        let peak = peakBuffers
        let failures = sendFailures
        let orderly = orderlyEnds
        let failed = failedEnds
        pool = try EventLoopThreadPool(count: 1, config: config) { loop, _ in
            for listener in listeners {
                loop.attach(to: listener) { connection in
                    connection.handler = { connection, event in
                        if case .disconnected(let error) = event {
                            if error == nil { orderly.increment() } else { failed.increment() }
                        }
                        guard case .received(let bytes) = event else { return }
                        bytes.forEachSegment { piece in
                            do throws(EvplError) {
                                try connection.send(copying: piece)
                            } catch {
                                failures.increment()
                                connection.close()
                            }
                        }
                        let pool = connection.loop.bufferPool
                        let inUse = pool.buffersInUse - pool.buffersLentToKernel
                        if inUse > peak.value { peak.store(inUse) }
                    }
                }
            }
        }
    }

    func stop() {
        for listener in listeners { listener.close() }
        pool.stop()
    }

    /// Waits up to `seconds` until `count` connections have ended.
    func awaitEnds(_ count: Int, seconds: Double = 30) {
        let deadline = MonotonicClock.nanoseconds() + UInt64(seconds * 1e9)
        while orderlyEnds.value + failedEnds.value < count && MonotonicClock.nanoseconds() < deadline {
            usleep(10_000)
        }
    }

    func shutdownGracefully(timeout: Duration, linger: Duration? = nil) -> ShutdownReport {
        pool.shutdownGracefully(timeout: timeout, linger: linger)
    }

    deinit { stop() }
}

@Suite("Half-close and inbound backpressure: nothing lost")
struct HalfCloseTests {
    static func unixPath() -> SocketAddress {
        try! SocketAddress(unixPath: "/tmp/evpl-halfclose-\(getpid())-\(UniqueName.next()).sock")
    }

    /// Many concurrent full-duplex streams, random chunks, a half-close at
    /// the end: each gets every byte back in order, then the end of stream.
    /// A 16-entry provided-buffer ring makes the io_uring receive run dry.
    @Test("concurrent full-duplex streams with a half-close get every byte back", arguments: StreamCase.backends)
    func concurrentHalfClose(_ backend: EvplProtocol.Backend) throws {
        let server = try ThreadedEchoServer([
            (EvplProtocol(.tcp, backend: backend), try SocketAddress(host: "127.0.0.1", port: 0)),
            (EvplProtocol(.unix, backend: backend), Self.unixPath()),
        ]) { $0.ioUringBufferRingEntries = 16 }
        defer { server.stop() }
        let tcp = server.listeners[0].address
        let unix = server.listeners[1].address
        let streams = Array(repeating: (tcp, 1 << 20), count: 16) + Array(repeating: (unix, 512 << 10), count: 4)
        let seed = UInt64(MonotonicClock.nanoseconds())
        let outcomes = RawStreamClient.echoConcurrently(streams.map { (address: $0.0, total: $0.1) }, seed: seed)
        for (index, outcome) in outcomes.enumerated() {
            #expect(outcome.isComplete, "stream \(index) (\(streams[index].0)), seed \(seed): \(outcome)")
        }
    }

    /// The peer writes everything, half-closes, and only then reads: the
    /// server must deliver its whole queue before its own end of stream.
    @Test("a peer that reads only after its half-close gets everything back",
          arguments: StreamCase.backends, [false, true])
    func readAfterHalfClose(_ backend: EvplProtocol.Backend, unix: Bool) throws {
        let evplProtocol = EvplProtocol(unix ? .unix : .tcp, backend: backend)
        let highWatermark = 1 << 20
        let server = try ThreadedEchoServer([(evplProtocol, unix ? Self.unixPath() : try SocketAddress(host: "127.0.0.1", port: 0))]) {
            $0.sendHighWatermark = highWatermark
            $0.ioUringBufferRingEntries = 16
        }
        defer { server.stop() }
        let total = 16 << 20
        let outcome = RawStreamClient.echo(to: server.listeners[0].address, total: total, seed: 7, readDelayMilliseconds: 1500)
        #expect(outcome.isComplete, "\(outcome)")
        #expect(server.sendFailures.value == 0)
        // Receiving paused above the watermark: the server never held much
        // more (on io_uring, at most what the kernel had already received
        // into the provided-buffer ring when the pause came).
        let ringBytes = backend == .ioUring ? 16 * EvplConfig().bufferSize : 0
        let peakBytes = server.peakBuffers.value * EvplConfig().bufferSize
        #expect(peakBytes <= highWatermark + ringBytes + (1 << 20), "the server held \(peakBytes) bytes for a peer that did not read")
    }
}
