import Evpl
#if canImport(Glibc)
import Glibc
#endif

// An echo server: every byte a client sends comes back, on as many loops
// as asked. `EchoServer [port] [threads]`; stops on SIGINT or SIGTERM.

let arguments = CommandLine.arguments.dropFirst()
let port = UInt16(arguments.first ?? "") ?? 7777
let threads = Int(arguments.dropFirst().first ?? "") ?? 2

do {
    let signals = try TerminationSignals()
    let listener = try Listener(address: SocketAddress(host: "127.0.0.1", port: port))
    let pool = try EventLoopThreadPool(count: threads) { loop, _ in
        loop.attach(to: listener) { connection in
            connection.handler = { connection, event in
                if case .received(let bytes) = event {
                    // Zero-copy: the received buffers are queued as they are.
                    try? connection.send(taking: bytes.retainedIOVecs())
                }
            }
        }
    }
    print("listening on \(listener.address)")
    fflush(nil)
    signals.wait()
    listener.close()
    let report = pool.shutdownGracefully(timeout: .seconds(5))
    print("stopped: \(report)")
} catch {
    print("EchoServer: \(error)")
}
