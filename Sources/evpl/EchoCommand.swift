import ArgumentParser
import Evpl

struct EchoCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "echo",
        abstract: "Run an echo server. Prints one line 'listening on <address>' when ready; exits 0 on SIGINT or SIGTERM."
    )

    @OptionGroup var endpoint: EndpointOptions

    @Option(help: "Event loop threads serving connections.")
    var threads: Int = 1

    func validate() throws {
        guard threads >= 1 else { throw ValidationError("--threads must be at least 1") }
    }

    func run() throws {
        let signals = try failing { try TerminationSignals() }
        let server = try failing {
            try EchoServer(protocol: endpoint.evplProtocol, address: endpoint.address(defaultPath: "/tmp/evpl-echo.sock"), threads: threads, mode: .echo)
        }
        print("listening on \(server.address)")
        flushStandardOutput()
        signals.wait()
        server.stop()
    }
}
