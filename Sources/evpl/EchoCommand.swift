import ArgumentParser
import Evpl
import EvplTLS

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

    @Option(name: .customLong("handshake-timeout"), help: "Seconds a connection may take to finish its handshake (TLS, then its first request) before it is closed; 0: no limit.")
    var handshakeTimeout: Double = 10

    @Option(name: .customLong("idle-timeout"), help: "Seconds a connection may send and receive nothing before it is closed; 0: no limit.")
    var idleTimeout: Double = 60

    func validate() throws {
        guard threads >= 1 else { throw ValidationError("--threads must be at least 1") }
        guard handshakeTimeout >= 0, idleTimeout >= 0 else { throw ValidationError("timeouts are seconds, 0 or more") }
    }

    /// The limits `--handshake-timeout` and `--idle-timeout` set.
    var timeouts: ConnectionTimeouts {
        ConnectionTimeouts(handshake: handshakeTimeout > 0 ? .milliseconds(Int64(handshakeTimeout * 1000)) : nil,
                           idle: idleTimeout > 0 ? .milliseconds(Int64(idleTimeout * 1000)) : nil)
    }

    /// Serves until SIGINT or SIGTERM: prints the one `listening on <address>`
    /// line once ready, then shuts down cleanly.
    func serveUntilTerminated(defaultPath: String, mode: EchoServer.Mode, api: API = .callbacks) throws {
        let signals = try failing { try TerminationSignals() }
        let server = try failing {
            try EchoServer(protocol: endpoint.evplProtocol(role: .server), address: endpoint.address(defaultPath: defaultPath), threads: threads, mode: mode,
                           api: api, timeouts: timeouts, config: logging.config())
        }
        print("listening on \(server.address)")
        flushStandardOutput()
        signals.wait()
        server.stop()
    }
}
