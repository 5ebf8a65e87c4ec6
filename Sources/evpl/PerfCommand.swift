import ArgumentParser
import Evpl
import EvplTLS

struct PerfCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "perf",
        abstract: "Measure round trips and throughput between a perf server and client.",
        subcommands: [PerfServerCommand.self, PerfClientCommand.self, PerfLocalCommand.self]
    )
}

struct PerfServerCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "server",
        abstract: "Serve perf clients. Prints 'listening on <address>' when ready; exits 0 on SIGINT or SIGTERM."
    )

    @OptionGroup var server: ServerOptions

    @Option(help: "callbacks (handlers on the loop) or async (a task per connection).")
    var api: API = .callbacks

    func run() throws {
        try server.serveUntilTerminated(defaultPath: "/tmp/evpl-perf.sock", mode: .perf, api: api)
    }
}

struct PerfClientCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "client",
        abstract: "Drive a perf server and report ops/s, bytes/s and latency percentiles."
    )

    @OptionGroup var endpoint: EndpointOptions

    @OptionGroup var workload: PerfWorkloadOptions

    @Option(help: "Client event loop threads.")
    var threads: Int = 1

    @Option(help: "callbacks (handlers on the loop) or async (a task per connection).")
    var api: API = .callbacks

    @Option(help: "The server's process ID, whose CPU time per operation is reported; by default the process that listens on --port or --path here, if any.")
    var serverPid: Int32?

    func run() throws {
        let address = try failing { try endpoint.address(defaultPath: "/tmp/evpl-perf.sock") }
        guard endpoint.protocol == .unix || endpoint.port != 0 else {
            throw ValidationError("--port is required for \(endpoint.protocol.rawValue)")
        }
        var plan = workload.plan(evplProtocol: try endpoint.evplProtocol(role: .client), address: address, threads: threads, api: api)
        plan.serverPID = serverPid ?? ProcessCPU.listener(port: endpoint.protocol == .unix ? nil : endpoint.port,
                                                          path: endpoint.protocol == .unix ? endpoint.path ?? "/tmp/evpl-perf.sock" : nil)
        try workload.run(plan)
    }
}

/// What a perf client sends, for how long, and how it reports.
struct PerfWorkloadOptions: ParsableArguments {
    @Option(help: "pingpong (echoed requests, latency), stream (one-way throughput) or handshake (a new connection per round trip: connections/s).")
    var mode: PerfMode = .pingpong

    @Option(help: "Message size in bytes.")
    var size: Int = 64

    @Option(help: "Messages in flight per connection (pingpong).")
    var depth: Int = 1

    @Option(help: "Connections (or UDP endpoints) in total.")
    var connections: Int = 1

    @Option(help: "Seconds to run.")
    var duration: Double = 5

    @Option(help: "Open loop (pingpong): requests a second over all connections, sent on schedule whatever the replies do; latency counts from the scheduled time, so a stall is not hidden. The client polls to keep the schedule.")
    var rate: Double?

    @Option(help: "With --rate: fixed (evenly spaced) or poisson (independent arrivals) intervals.")
    var arrivals: Arrivals = .fixed

    @Flag(help: "Print one JSON object instead of text.")
    var json = false

    func plan(evplProtocol: EvplProtocol, address: SocketAddress, threads: Int = 1, api: API = .callbacks, cpu: Int? = nil) -> PerfPlan {
        PerfPlan(evplProtocol: evplProtocol, address: address, mode: mode, size: size, depth: depth, connections: connections, threads: threads,
                 durationSeconds: duration, cpu: cpu, api: api, rate: rate, arrivals: arrivals)
    }

    /// Runs `plan`, with a progress line a second unless `--json`, then the report.
    func run(_ plan: PerfPlan) throws {
        let result = try failing {
            try PerfClient.run(plan, progress: json ? nil : { second in
                print(PerfReport.progressLine(second, mode: mode))
                flushStandardOutput()
            })
        }
        print(json ? PerfReport.json(result) : PerfReport.text(plan: plan, result: result))
    }
}

extension PerfMode: ExpressibleByArgument {}

/// Formats perf results.
enum PerfReport {
    static func json(_ result: PerfResult) -> String {
        var fields = [
            "\"ops_per_sec\":\(JSON.number(result.operationsPerSecond))", "\"bytes_per_sec\":\(JSON.number(result.bytesPerSecond))",
            "\"operations\":\(result.operations)", "\"seconds\":\(JSON.number(result.seconds))", "\"latency_ns\":\(latencyJSON(result.latency))",
        ]
        if let cpu = result.clientCPUNanoseconds {
            fields.append("\"client_cpu_ns_per_op\":\(JSON.number(perOperation(cpu, result)))")
        }
        if let cpu = result.serverCPUNanoseconds {
            fields.append("\"server_cpu_ns_per_op\":\(JSON.number(perOperation(cpu, result)))")
            fields.append("\"server_cpu_share\":\(JSON.number(Double(cpu) / 1e9 / result.seconds))")
        }
        return "{\(fields.joined(separator: ","))}"
    }

    /// CPU nanoseconds per completed operation (0 when none completed).
    static func perOperation(_ nanoseconds: UInt64, _ result: PerfResult) -> Double {
        result.operations == 0 ? 0 : Double(nanoseconds) / Double(result.operations)
    }

    /// `{"min":…,"mean":…,"p50":…,"p99":…,"p999":…,"max":…}` in nanoseconds.
    static func latencyJSON(_ latency: LatencyHistogram) -> String {
        let fields = [
            "\"min\":\(latency.count == 0 ? 0 : latency.min)",
            "\"mean\":\(JSON.number(latency.mean))",
            "\"p50\":\(latency.value(atQuantile: 0.5))",
            "\"p99\":\(latency.value(atQuantile: 0.99))",
            "\"p999\":\(latency.value(atQuantile: 0.999))",
            "\"max\":\(latency.max)",
        ]
        return "{\(fields.joined(separator: ","))}"
    }

    static func text(plan: PerfPlan, result: PerfResult) -> String {
        var lines = ["\(plan.evplProtocol) \(plan.mode.rawValue) size=\(plan.size) depth=\(plan.depth) connections=\(plan.connections) threads=\(plan.threads) duration=\(String(format1(result.seconds)))s"]
        lines.append("ops/s \(Int(result.operationsPerSecond.rounded()))  Gbit/s \(format2(result.gigabitsPerSecond))")
        if result.latency.count > 0 {
            let latency = result.latency
            lines.append("latency\(plan.rate == nil ? "" : " (from the schedule)") min \(microseconds(latency.min)) mean \(microseconds(UInt64(latency.mean))) p50 \(microseconds(latency.value(atQuantile: 0.5))) p99 \(microseconds(latency.value(atQuantile: 0.99))) p99.9 \(microseconds(latency.value(atQuantile: 0.999))) max \(microseconds(latency.max))")
        }
        var cpu: [String] = []
        if let client = result.clientCPUNanoseconds {
            cpu.append("client \(microseconds(UInt64(perOperation(client, result))))/op")
        }
        if let server = result.serverCPUNanoseconds {
            cpu.append("server \(microseconds(UInt64(perOperation(server, result))))/op (\(format1(Double(server) / 1e7 / result.seconds))% of a CPU)")
        }
        if !cpu.isEmpty { lines.append("cpu " + cpu.joined(separator: ", ")) }
        return lines.joined(separator: "\n")
    }

    /// `[  3s] 41250 ops/s  0.02 Gbit/s  p99 31.5us`: one second of a run;
    /// stream mode measures no round trips, so it has no p99.
    static func progressLine(_ second: PerfProgress, mode: PerfMode) -> String {
        var line = "[\(String(second.second).leftPadded(3))s] \(Int(second.operationsPerSecond.rounded())) ops/s  \(format2(second.bytesPerSecond * 8 / 1e9)) Gbit/s"
        if mode == .pingpong { line += "  p99 \(microseconds(second.p99))" }
        return line
    }

    static func microseconds(_ nanoseconds: UInt64) -> String {
        "\(format1(Double(nanoseconds) / 1000))us"
    }

    static func format1(_ value: Double) -> String {
        let scaled = (value * 10).rounded()
        return "\(Int(scaled) / 10).\(abs(Int(scaled)) % 10)"
    }

    static func format2(_ value: Double) -> String {
        let scaled = Int((value * 100).rounded())
        let fraction = abs(scaled) % 100
        return "\(scaled / 100).\(fraction < 10 ? "0" : "")\(fraction)"
    }
}
