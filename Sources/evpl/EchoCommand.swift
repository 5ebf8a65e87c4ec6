import ArgumentParser
import Evpl

struct EchoCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "echo",
        abstract: "Run an echo server. Prints one line 'listening on <address>' when ready; exits 0 on SIGINT or SIGTERM."
    )

    @OptionGroup var server: ServerOptions

    @Option(help: "callbacks (handlers on the loop) or async (a task per connection).")
    var api: API = .callbacks

    func run() throws {
        try server.serveUntilTerminated(defaultPath: "/tmp/evpl-echo.sock", mode: .echo, api: api)
    }
}

/// Options of every server command: where to listen and on how many threads.
struct ServerOptions: ParsableArguments {
    @OptionGroup var endpoint: EndpointOptions
    @OptionGroup var logging: LoggingOptions

    @Option(help: "Event loop threads serving connections.")
    var threads: Int = 1

    func validate() throws {
        guard threads >= 1 else { throw ValidationError("--threads must be at least 1") }
    }

    /// Serves until SIGINT or SIGTERM: prints the one `listening on <address>`
    /// line once ready, then shuts down cleanly.
    func serveUntilTerminated(defaultPath: String, mode: EchoServer.Mode, api: API = .callbacks) throws {
        let signals = try failing { try TerminationSignals() }
        let server = try failing {
            try EchoServer(protocol: endpoint.evplProtocol(role: .server), address: endpoint.address(defaultPath: defaultPath), threads: threads, mode: mode,
                           api: api, config: logging.config())
        }
        print("listening on \(server.address)")
        flushStandardOutput()
        signals.wait()
        server.stop()
    }
}
