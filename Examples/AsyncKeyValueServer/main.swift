import Evpl
import KeyValueLog
#if canImport(Glibc)
import Glibc
#endif

// KeyValueServer through the async API: an `AsyncLoggedStore` actor on the
// loop owns the values and the log, and each connection is a task that
// awaits a line, awaits the store's answer and writes it. SETs from many
// connections are made durable together (group commit).
//
// `AsyncKeyValueServer DATA-FILE [PORT]`: prints `listening on ADDRESS`,
// stops on SIGINT or SIGTERM.

/// The answer to one line, sent once a SET is durable.
@Sendable func answer(_ request: Request, from store: AsyncLoggedStore) async -> String {
    switch request {
    case .get(let key):
        return await store.value(for: key).map { "VALUE " + String(decoding: $0, as: UTF8.self) } ?? "NOTFOUND"
    case .set(let key, let value):
        return await store.change(key, to: Array(value.utf8)).map { "ERROR \($0)" } ?? "OK"
    case .invalid:
        return Request.usage
    }
}

let arguments = CommandLine.arguments.dropFirst()
guard let path = arguments.first else {
    print("usage: AsyncKeyValueServer DATA-FILE [PORT]")
    exit(2)
}
do {
    let signals = try TerminationSignals()
    let pool = try EventLoopThreadPool<Void>(count: 1) { _, _ in }
    let executor = pool.executors[0]
    let listener = try Listener(address: SocketAddress(host: "127.0.0.1", port: UInt16(arguments.dropFirst().first ?? "") ?? 0))
    let lines = { @Sendable () -> Segmenter? in Segmenters.delimited(by: [UInt8(ascii: "\n")], maximumLength: 60_000) }
    // The main thread must not await before `signals.wait()`: once top-level
    // code first suspends, the main thread waits inside the runtime with
    // every signal unblocked, and SIGTERM would end the process at once.
    let server = Task.detached {
        let store: AsyncLoggedStore
        do {
            store = try await AsyncLoggedStore.open(path, on: executor)
        } catch {
            print("AsyncKeyValueServer: \(error)")
            exit(1)
        }
        print("listening on \(listener.address)")
        fflush(nil)
        await listener.serve(on: [executor], segmenter: lines) { connection in
            // One request at a time: the next line is read once this one is answered.
            while let line = try await connection.receive() {
                let answer = await answer(Request(line: line.array.dropLast()), from: store)
                try await connection.write(Array((answer + "\n").utf8))
            }
        }
        // Cancelled: SETs already taken become durable and are answered,
        // later ones are refused.
        await store.close()
    }
    signals.wait()  // the main thread waits; connections run on the loop
    listener.close()
    server.cancel()
    await server.value
    _ = await pool.gracefulShutdown(timeout: .seconds(5))
} catch {
    print("AsyncKeyValueServer: \(error)")
    exit(1)
}
