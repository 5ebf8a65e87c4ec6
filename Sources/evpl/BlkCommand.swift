import ArgumentParser
import Evpl

struct BlkCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "blk",
        abstract: "Measure block I/O on a file or device from one event loop (fio-like)."
    )

    @Option(help: "File or block device (a missing file is created with --size bytes).")
    var path: String

    @Option(help: "read, write, randread, randwrite or randrw.")
    var rw: BlockWorkload = .randread

    @Option(help: "Bytes per request.")
    var bs: Int = 4096

    @Option(help: "Requests in flight.")
    var iodepth: Int = 1

    @Option(help: "Bytes of the file to use; a run ends once it has moved this much, unless --time-based.")
    var size: UInt64 = 1 << 30

    @Option(help: "Seconds a run lasts at most.")
    var runtime: Double = 5

    @Flag(help: "Run for all of --runtime, going over --size again as needed (fio's --time_based).")
    var timeBased = false

    @Option(help: "io_uring, libaio, psync or null.")
    var engine: BlockEngine = .ioUring

    @Flag(help: "Open with O_DIRECT.")
    var direct = false

    @Flag(help: "Write a position-keyed pattern first, check every read, and read everything back at the end.")
    var verify = false

    @Flag(help: "Print {iops, bytes_per_sec, latency_ns} as JSON.")
    var json = false

    @Option(help: "callbacks (a completion handler), async (one task per request in flight, awaiting it) or async-stream (one task taking every completion from device.completions()).")
    var api: BlockAPI = .callbacks

    @OptionGroup var logging: LoggingOptions

    func validate() throws {
        guard bs > 0, bs % 8 == 0 else { throw ValidationError("--bs must be a positive multiple of 8") }
        guard !direct || bs % 4096 == 0 else { throw ValidationError("--direct needs --bs in multiples of 4096") }
        guard (1...4096).contains(iodepth) else { throw ValidationError("--iodepth must be 1...4096") }
        guard size >= UInt64(bs) else { throw ValidationError("--size must hold at least one block") }
        guard runtime > 0, runtime <= 1e7 else { throw ValidationError("--runtime must be positive and at most 10000000 seconds") }
        guard !(verify && engine == .null) else { throw ValidationError("--verify needs an engine that stores data (not null)") }
    }

    func run() throws {
        let plan = BlockPlan(path: path, workload: rw, blockSize: bs, depth: iodepth, size: size, seconds: runtime,
                             timeBased: timeBased, engine: engine, direct: direct, verify: verify, api: api)
        let result = try failing {
            try BlockBench.run(plan, config: logging.config(), progress: json ? nil : { second in
                print("[\(String(second.second).leftPadded(3))s] iops \(Int(second.operationsPerSecond.rounded()))  MiB/s \(PerfReport.format1(second.bytesPerSecond / 1_048_576))  p99 \(PerfReport.microseconds(second.p99))")
                flushStandardOutput()
            })
        }
        if let error = result.error {
            throw CommandFailure(message: error.description)
        }
        if let offset = result.mismatch {
            throw CommandFailure(message: "verify failed: wrong data at offset \(offset) of \(path)")
        }
        print(json ? Self.json(result) : Self.text(plan, result))
    }

    static func json(_ result: BlockResult) -> String {
        "{\"iops\":\(JSON.number(result.operationsPerSecond)),\"bytes_per_sec\":\(JSON.number(result.bytesPerSecond)),\"operations\":\(result.operations),\"seconds\":\(JSON.number(result.seconds)),\"latency_ns\":\(PerfReport.latencyJSON(result.latency))}"
    }

    static func text(_ plan: BlockPlan, _ result: BlockResult) -> String {
        let latency = result.latency
        return """
            \(plan.path) \(plan.workload.rawValue) bs=\(plan.blockSize) iodepth=\(plan.depth) engine=\(plan.engine.rawValue)\(plan.direct ? " direct" : "")\(plan.verify ? " verified" : "")
            iops \(Int(result.operationsPerSecond.rounded()))  MiB/s \(PerfReport.format1(result.bytesPerSecond / 1_048_576))
            latency min \(PerfReport.microseconds(latency.count == 0 ? 0 : latency.min)) mean \(PerfReport.microseconds(UInt64(latency.mean))) p50 \(PerfReport.microseconds(latency.value(atQuantile: 0.5))) p99 \(PerfReport.microseconds(latency.value(atQuantile: 0.99))) max \(PerfReport.microseconds(latency.max))
            """
    }
}

extension BlockWorkload: ExpressibleByArgument {}
extension BlockEngine: ExpressibleByArgument {}
