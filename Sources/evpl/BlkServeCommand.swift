import ArgumentParser
import Evpl
import EvplTLS

struct BlkServeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "blk-serve",
        abstract: "Serve byte ranges of a file over TCP or Unix: 12-byte requests (offset u64, length u32, big-endian), answers read by the block engine and sent without a copy."
    )

    @OptionGroup var server: ServerOptions

    @Option(help: "The file or block device to serve.")
    var file: String

    @Option(help: "io_uring, libaio, psync or null.")
    var engine: BlockEngine = .ioUring

    @Flag(help: "Open with O_DIRECT.")
    var direct = false

    func validate() throws {
        guard server.endpoint.protocol != .udp else { throw ValidationError("blk-serve needs a stream protocol (tcp or unix)") }
    }

    func run() throws {
        let signals = try failing { try TerminationSignals() }
        let ranges = try failing {
            try BlockRangeServer(file: file, engine: engine, direct: direct, protocol: server.endpoint.evplProtocol(role: .server),
                                 address: server.endpoint.address(defaultPath: "/tmp/evpl-blk.sock"), threads: server.threads,
                                 timeouts: server.timeouts, config: server.logging.config())
        }
        print("listening on \(ranges.address)")
        flushStandardOutput()
        signals.wait()
        ranges.stop()
    }
}
