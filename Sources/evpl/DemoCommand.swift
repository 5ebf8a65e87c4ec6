import ArgumentParser
import Evpl
import EvplHTTP
import EvplTLS
import HTTPTypes
#if canImport(Glibc)
import Glibc
#endif

struct DemoCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "demo",
        abstract: "Run a server and a client in this process over every available protocol, then block I/O on every available engine, and print a table."
    )

    @Option(help: "Seconds per measurement.")
    var seconds: Double = 1.5

    func run() throws {
        print("swift-evpl demo: server and client in one process over loopback (inproc: between two loops, no kernel), then block I/O on a scratch file; default config")
        print("")
        let header = ["protocol", "api", "mode", "ops/s", "Gbit/s", "p50", "p99"]
        let widths = [16, 12, 16, 10, 8, 9, 9]
        print(row(header, widths))
        print(row(widths.map { String(repeating: "-", count: $0) }, widths))
        let available = Set(Probe.entries().filter { $0.kind == "protocol" && $0.available }.map(\.name))
        // TLS rows use a throwaway self-signed certificate, made now, that the client trusts.
        let identity = try failing { try TLSConfiguration.selfSignedIdentity(for: ["localhost", "127.0.0.1"]) }
        // Its client runs full handshakes: the handshake rows count those.
        var client = TLSConfiguration.client(serverName: "localhost", trustRoots: .certificates(identity.certificateChain))
        client.resumesSessions = false
        let clientConfiguration = client
        let tls = try failing {
            (server: try TLSContext(.server(certificateChain: identity.certificateChain, privateKey: identity.privateKey), role: .server),
             client: try TLSContext(clientConfiguration, role: .client))
        }
        let transports = EvplProtocol.Transport.allCases.filter { available.contains($0.rawValue) }
        let runs = transports.map { ($0, API.callbacks, false) }
            + transports.filter { EvplProtocol($0).isStream }.map { ($0, API.async, false) }
            + transports.filter { $0 == .tcp }.map { ($0, API.callbacks, true) }
        for (transport, api, usesTLS) in runs {
            let evplProtocol = EvplProtocol(transport, tls: usesTLS ? tls.server : nil)
            // Show what `auto` resolved to.
            let label = "\(transport.rawValue)\(usesTLS ? "+tls" : "")/\((try? evplProtocol.resolvedBackend())?.rawValue ?? "auto")"
            let path = "/tmp/evpl-demo-\(getpid()).sock"
            let address = try failing { () throws(EvplError) in
                switch transport {
                case .unix: try SocketAddress(unixPath: path)
                case .inproc: try SocketAddress(inProcessName: "evpl-demo-\(getpid())")
                default: try SocketAddress(host: "127.0.0.1", port: 0)
                }
            }
            let server = try failing { try EchoServer(protocol: evplProtocol, address: address, threads: 1, mode: .perf, api: api) }
            defer { server.stop() }
            var modes: [(PerfMode, Int)] = [(.pingpong, 64)]
            if evplProtocol.isStream { modes.append((.stream, 128 * 1024)) }
            // A new connection per round trip: connections (under TLS, handshakes) per second.
            if evplProtocol.isStream && api == .callbacks { modes.append((.handshake, 64)) }
            for (mode, size) in modes {
                let plan = PerfPlan(evplProtocol: EvplProtocol(transport, tls: usesTLS ? tls.client : nil), address: server.address, mode: mode, size: size, depth: 1, connections: 1, threads: 1,
                                    durationSeconds: seconds, api: api)
                let result = try failing { try PerfClient.run(plan) }
                let hasLatency = result.latency.count > 0
                print(row([
                    label,
                    api.rawValue,
                    "\(mode.rawValue) \(size >= 1024 ? "\(size / 1024) KiB" : "\(size) B")",
                    Self.rate(result.operationsPerSecond),
                    PerfReport.format2(result.gigabitsPerSecond),
                    hasLatency ? PerfReport.microseconds(result.latency.value(atQuantile: 0.5)) : "-",
                    hasLatency ? PerfReport.microseconds(result.latency.value(atQuantile: 0.99)) : "-",
                ], widths))
                flushStandardOutput()
            }
        }
        try httpRows(widths)
        try blockRows(widths)
        print("")
        print("unavailable here:")
        for entry in Probe.entries() + Probe.tlsEntries() where !entry.available {
            print("  \(entry.kind) \(entry.name): \(entry.reason)")
        }
    }

    /// HTTP/1.1 keep-alive GETs of `hello world` from the library's client
    /// on this thread to `evpl http serve`'s handler on a loop thread, one
    /// request at a time, per backend.
    private func httpRows(_ widths: [Int]) throws {
        for backend in [EvplProtocol.Backend.socket, .ioUring] where Probe.unavailableReason(for: backend) == nil {
            let listener = try failing { try Listener(address: SocketAddress(host: "127.0.0.1", port: 0), protocol: EvplProtocol(.tcp, backend: backend)) }
            let pool = try failing {
                try EventLoopThreadPool(count: 1) { loop, _ in loop.serveHTTP(from: listener, handler: HelloWorld.handle) }
            }
            defer {
                listener.close()
                _ = pool.shutdownGracefully(timeout: .seconds(2))
            }
            let loop = try failing { try EventLoop() }
            let client = HTTPClient(loop: loop, configuration: HTTPClientConfiguration(evplProtocol: EvplProtocol(.tcp, backend: backend)))
            let driver = HTTPDemoDriver(client: client, request: HTTPRequest(method: .get, scheme: "http", authority: "\(listener.address)", path: "/"),
                                        end: MonotonicClock.nanoseconds() + UInt64(seconds * 1e9))
            let started = MonotonicClock.nanoseconds()
            driver.next()
            while driver.failure == nil && (driver.completed == 0 || MonotonicClock.nanoseconds() < driver.end) {
                loop.runOnce()
            }
            let elapsed = Double(MonotonicClock.nanoseconds() - started) / 1e9
            let failure = driver.failure
            // Every connection ends before the loop goes: a connection and its
            // HTTP layer hold each other until then (a request still in flight fails now).
            loop.closeAll()
            if let failure { throw CommandFailure(message: "http demo: \(failure)") }
            let (completed, latency) = (driver.completed, driver.latency)
            print(row([
                "http/\(backend.rawValue)",
                "callbacks",
                "GET keep-alive",
                Self.rate(Double(completed) / elapsed),
                "-",
                PerfReport.microseconds(latency.value(atQuantile: 0.5)),
                PerfReport.microseconds(latency.value(atQuantile: 0.99)),
            ], widths))
            flushStandardOutput()
        }
    }

    /// Sends keep-alive GETs one after another until `end`, timing each.
    private final class HTTPDemoDriver {
        let client: HTTPClient
        let request: HTTPRequest
        let end: UInt64
        var latency = LatencyHistogram()
        var completed = 0
        var failure: HTTPClientError?
        private var sentAt: UInt64 = 0

        init(client: HTTPClient, request: HTTPRequest, end: UInt64) {
            self.client = client
            self.request = request
            self.end = end
        }

        func next() {
            sentAt = MonotonicClock.nanoseconds()
            client.execute(request) { [unowned self] event in
                switch event {
                case .end:
                    let now = MonotonicClock.nanoseconds()
                    latency.record(now - sentAt)
                    completed += 1
                    if now < end { next() }
                case .failed(let error):
                    failure = error
                default:
                    break
                }
            }
        }
    }

    /// 4 KiB random reads at depth 32 on a 64 MiB scratch file, per engine,
    /// then through the async API (a task per request, and a completion
    /// stream) on the first engine.
    private func blockRows(_ widths: [Int]) throws {
        let path = "/var/tmp/evpl-demo-\(getpid()).img"
        defer { unlink(path) }
        let engines = BlockEngine.allCases.filter { $0.unavailableReason == nil && $0 != .null }
        let runs = engines.map { ($0, BlockAPI.callbacks) } + engines.prefix(1).flatMap { [($0, BlockAPI.async), ($0, BlockAPI.asyncStream)] }
        for (engine, api) in runs {
            let plan = BlockPlan(path: path, workload: .randread, blockSize: 4096, depth: 32, size: 64 << 20, seconds: seconds,
                                 timeBased: true, engine: engine, direct: false, verify: false, api: api)
            let result = try failing { try BlockBench.run(plan, config: EvplConfig.fromProcessEnvironment()) }
            print(row([
                "blk/\(engine.rawValue)",
                api.rawValue,
                "randread 4 KiB",
                Self.rate(result.operationsPerSecond),
                PerfReport.format2(result.bytesPerSecond * 8 / 1e9),
                PerfReport.microseconds(result.latency.value(atQuantile: 0.5)),
                PerfReport.microseconds(result.latency.value(atQuantile: 0.99)),
            ], widths))
            flushStandardOutput()
        }
    }

    /// A rate as a whole number, or "-" for one a run too short to time
    /// made infinite or undefined (converting those to `Int` traps).
    private static func rate(_ value: Double) -> String {
        value.isFinite ? String(Int(value.rounded())) : "-"
    }

    private func row(_ cells: [String], _ widths: [Int]) -> String {
        zip(cells, widths).map { cell, width in cell.padding(toLength: width, withPad: " ", startingAt: 0) }.joined(separator: " ")
    }
}
