import Evpl
import KeyValueLog
#if canImport(Glibc)
import Glibc
#endif

// A key-value server whose data survives a restart. Every SET is appended
// to a log file (`LogRecord`) through the block API by a `LoggedStore`,
// and answered once the write and a flush have completed; at start the log
// is read back with block reads and replayed. One request per line
// (`Request`).
//
// `KeyValueServer DATA-FILE [PORT]`: prints `listening on ADDRESS`, stops
// on SIGINT or SIGTERM.

/// The line protocol over a `LoggedStore`.
final class KeyValueServer {
    private let store: LoggedStore

    init(store: LoggedStore) {
        self.store = store
    }

    func serve(_ connection: Connection) {
        connection.segmenter = Segmenters.delimited(by: [UInt8(ascii: "\n")], maximumLength: 60_000)
        connection.handler = { [unowned self] connection, event in
            if case .received(let line) = event {
                handle(Request(line: line.array.dropLast()), from: connection)
            }
        }
    }

    private func handle(_ request: Request, from connection: Connection) {
        switch request {
        case .get(let key):
            reply(store[key].map { "VALUE " + String(decoding: $0, as: UTF8.self) } ?? "NOTFOUND", to: connection)
        case .set(let key, let value):
            // Answers stay in request order: nothing more is read from this
            // connection until its SET is durable.
            connection.pauseReceiving()
            store.change(key, to: Array(value.utf8)) { [unowned self] error in
                reply(error.map { "ERROR \($0)" } ?? "OK", to: connection)
                connection.resumeReceiving()
            }
        case .invalid:
            reply(Request.usage, to: connection)
        }
    }

    private func reply(_ text: String, to connection: Connection) {
        guard !connection.isClosed else { return }
        try? Array((text + "\n").utf8).withUnsafeBytes { try connection.send(copying: $0) }
    }
}

let arguments = CommandLine.arguments.dropFirst()
guard let path = arguments.first else {
    print("usage: KeyValueServer DATA-FILE [PORT]")
    exit(2)
}
do {
    let signals = try TerminationSignals()
    let loop = try EventLoop()
    let store = try LoggedStore(loop: loop, path: path)
    let server = KeyValueServer(store: store)
    let listener = try Listener(address: SocketAddress(host: "127.0.0.1", port: UInt16(arguments.dropFirst().first ?? "") ?? 0))
    loop.attach(to: listener) { server.serve($0) }
    let watch = try loop.watch(fd: signals.fd, interest: .readable) { watch, _ in
        watch.remove()
        listener.close()
        // SETs in flight become durable and are answered before the loop stops.
        loop.shutdownGracefully(timeout: .seconds(5)) { _ in store.close() }
    }
    print("listening on \(listener.address)")
    fflush(nil)
    loop.run()
    _ = watch
} catch {
    print("KeyValueServer: \(error)")
    exit(1)
}
