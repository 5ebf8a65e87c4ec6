import Evpl
#if canImport(Glibc)
import Glibc
#endif

// EchoServer through the async API: each connection is a task on the loop
// that accepted it. `AsyncEchoServer [port] [threads]`; stops on SIGINT or
// SIGTERM.

let arguments = CommandLine.arguments.dropFirst()
let port = UInt16(arguments.first ?? "") ?? 7777
let threads = Int(arguments.dropFirst().first ?? "") ?? 2

do {
    let signals = try TerminationSignals()
    let listener = try Listener(address: SocketAddress(host: "127.0.0.1", port: port))
    let pool = try EventLoopThreadPool<Void>(count: threads) { _, _ in }
    let server = Task.detached {
        await listener.serve(on: pool.executors) { connection in
            for try await bytes in connection.inbound {
                // Zero-copy: the received pool buffers go back out as they are.
                try await connection.write(bytes)
            }
        }
    }
    print("listening on \(listener.address)")
    fflush(nil)
    signals.wait()  // the main thread waits; connections run on the loops
    server.cancel()
    listener.close()
    let report = await pool.gracefulShutdown(timeout: .seconds(5))
    print("stopped: \(report)")
} catch {
    print("AsyncEchoServer: \(error)")
}
