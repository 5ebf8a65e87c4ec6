import ArgumentParser
import Evpl
import EvplTLS

@main
struct EvplCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "evpl",
        abstract: "Event-driven network and block I/O with swift-evpl: probe, echo, perf, blk, blk-serve, http and demo.",
        subcommands: [ProbeCommand.self, EchoCommand.self, PerfCommand.self, BlkCommand.self, BlkServeCommand.self, HTTPCommand.self, DemoCommand.self]
    )

    /// Secures the standard streams (see ``StandardStreams/secure()``), then
    /// parses the command line and runs the command it names.
    static func main() {
        StandardStreams.secure()
        main(nil)
    }
}

/// Endpoint options shared by servers and clients.
struct EndpointOptions: ParsableArguments {
    @Option(help: "Transport: tcp, udp or unix.")
    var `protocol`: EvplProtocol.Transport = .tcp

    @Option(help: "Backend: auto, socket or io_uring (rdmacm and xlio are named but unavailable).")
    var backend: EvplProtocol.Backend = .auto

    @Option(help: "Host for tcp/udp.")
    var host: String = "127.0.0.1"

    @Option(help: "Port for tcp/udp (0 picks a free one when serving).")
    var port: UInt16 = 0

    @Option(help: "Socket path for unix (absolute) or @name for an abstract socket.")
    var path: String?

    @OptionGroup var tls: TLSOptions

    /// The protocol the options name, with TLS in `role` when `--tls` is
    /// given, offering `applicationProtocols` by ALPN.
    func evplProtocol(role: TLSContext.Role, applicationProtocols: [String] = []) throws -> EvplProtocol {
        EvplProtocol(`protocol`, backend: backend, tls: try tls.context(role: role, host: host, applicationProtocols: applicationProtocols))
    }

    func address(defaultPath: String) throws -> SocketAddress {
        switch `protocol` {
        case .tcp, .udp:
            return try SocketAddress(host: host, port: port)
        case .unix:
            return try SocketAddress(parsing: path ?? defaultPath)
        case .inproc:
            return try SocketAddress(inProcessName: path ?? "evpl")
        }
    }
}

extension EvplProtocol.Transport: ExpressibleByArgument {}
extension EvplProtocol.Backend: ExpressibleByArgument {}

/// Turns a library error into a clean exit: its message on stderr, status 1.
func failing<R>(_ body: () throws -> R) throws -> R {
    do {
        return try body()
    } catch let error as EvplError {
        throw CommandFailure(message: error.description)
    }
}

/// A failure the command reports as one line, without usage text.
struct CommandFailure: Error, CustomStringConvertible {
    let message: String
    var description: String { message }
}
