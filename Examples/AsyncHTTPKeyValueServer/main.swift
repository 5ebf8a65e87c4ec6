import Evpl
import EvplHTTP
import HTTPTypes
import KeyValueHTTP
import KeyValueLog
#if canImport(Glibc)
import Glibc
#endif

// HTTPKeyValueServer through the async API: a task per request awaits the
// body, then the `AsyncLoggedStore` actor on the same loop, which makes
// changes from many connections durable together (group commit).
//
//     GET /key       200 and the value, or 404
//     PUT /key       204 once the value is durable
//     DELETE /key    204 once the deletion is durable, or 404
//
// `AsyncHTTPKeyValueServer DATA-FILE [PORT]`: prints `listening on ADDRESS`,
// stops on SIGINT or SIGTERM.

@Sendable func answer(_ request: HTTPServerRequest, _ writer: HTTPResponseWriter, from store: AsyncLoggedStore) async throws {
    guard let key = HTTPKey.of(request.head.request) else {
        try writer.respond(HTTPResponse(status: .badRequest), body: Array("the path names no key\n".utf8))
        return
    }
    switch request.head.request.method {
    case .get, .head:
        if let value = await store.value(for: key) {
            try writer.respond(HTTPKey.found, body: value)
        } else {
            try writer.respond(HTTPResponse(status: .notFound))
        }
    case .put:
        var body: [UInt8] = []
        for try await piece in request.body { body += piece }
        try confirm(await store.change(key, to: body), with: writer)
    case .delete:
        guard await store.value(for: key) != nil else {
            try writer.respond(HTTPResponse(status: .notFound))
            return
        }
        try confirm(await store.change(key, to: nil), with: writer)
    default:
        try writer.respond(HTTPKey.methodNotAllowed)
    }
}

/// `204` for a durable change, `500` with the reason otherwise.
func confirm(_ error: EvplError?, with writer: HTTPResponseWriter) throws {
    guard let error else {
        try writer.respond(HTTPResponse(status: .noContent))
        return
    }
    try writer.respond(HTTPResponse(status: .internalServerError), body: Array("\(error)\n".utf8))
}

let arguments = CommandLine.arguments.dropFirst()
guard let path = arguments.first else {
    print("usage: AsyncHTTPKeyValueServer DATA-FILE [PORT]")
    exit(2)
}
do {
    let signals = try TerminationSignals()
    let pool = try EventLoopThreadPool<Void>(count: 1) { _, _ in }
    let executor = pool.executors[0]
    let listener = try Listener(address: SocketAddress(host: "127.0.0.1", port: UInt16(arguments.dropFirst().first ?? "") ?? 0))
    // As in AsyncKeyValueServer, the main thread does not await before
    // `signals.wait()`, so that SIGTERM stays blocked for it to take.
    let opened = Task.detached {
        do {
            let store = try await AsyncLoggedStore.open(path, on: executor)
            pool.remotes[0].execute { loop in
                loop.serveHTTP(from: listener, configuration: HTTPKey.configuration) { request, writer in
                    try await answer(request, writer, from: store)
                }
            }
            print("listening on \(listener.address)")
            fflush(nil)
            return store
        } catch {
            print("AsyncHTTPKeyValueServer: \(error)")
            exit(1)
        }
    }
    signals.wait()
    listener.close()
    // Changes already taken become durable and are answered; the log closes.
    await opened.value.close()
    _ = await pool.gracefulShutdown(timeout: .seconds(5))
} catch {
    print("AsyncHTTPKeyValueServer: \(error)")
    exit(1)
}
