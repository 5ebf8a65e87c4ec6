import ArgumentParser
import Evpl
#if canImport(Glibc)
import Glibc
#endif

struct PerfLocalCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "local",
        abstract: "Run a perf server loop and a perf client loop in this process, each on its own thread, and report what 'perf client' reports.",
        discussion: "Compares transports side by side without a second process: --protocol inproc moves buffers between the two loops by reference; unix and tcp go through the kernel's loopback."
    )

    @Option(help: "inproc, unix or tcp.")
    var `protocol`: EvplProtocol.Transport = .inproc

    @Option(help: "Backend for unix and tcp (auto, socket, io_uring).")
    var backend: EvplProtocol.Backend = .auto

    @OptionGroup var workload: PerfWorkloadOptions

    @Option(help: "CPUs to pin the server loop and the client loop to, as 'SERVER,CLIENT' (for example 0,1).")
    var cpus: String?

    func run() throws {
        guard `protocol` != .udp else { throw ValidationError("perf local measures stream protocols: inproc, unix or tcp") }
        let pinned = try cpus.map(Self.parseCPUs) ?? []
        let evplProtocol = EvplProtocol(`protocol`, backend: `protocol` == .inproc ? .auto : backend)
        let address = try failing { () throws(EvplError) in
            switch `protocol` {
            case .inproc: try SocketAddress(inProcessName: "evpl-perf-local-\(getpid())")
            case .unix: try SocketAddress(unixPath: "/tmp/evpl-perf-local-\(getpid()).sock")
            default: try SocketAddress(host: "127.0.0.1", port: 0)
            }
        }
        let server = try failing { try EchoServer(protocol: evplProtocol, address: address, threads: 1, mode: .perf, cpu: pinned.first) }
        defer { server.stop() }
        try workload.run(workload.plan(evplProtocol: evplProtocol, address: server.address, cpu: pinned.count > 1 ? pinned[1] : nil))
    }

    /// `0,1` → `[0, 1]`: the server's CPU, then the client's.
    static func parseCPUs(_ text: String) throws -> [Int] {
        let cpus = text.split(separator: ",").map { Int(String($0.filter { $0 != " " })) }
        guard !cpus.isEmpty, cpus.count <= 2, cpus.allSatisfy({ ($0 ?? -1) >= 0 }) else {
            throw ValidationError("--cpus takes SERVER,CLIENT CPU numbers, for example 0,1")
        }
        return cpus.map { $0! }
    }
}
