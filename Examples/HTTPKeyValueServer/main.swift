import Evpl
import EvplHTTP
import HTTPTypes
import KeyValueHTTP
import KeyValueLog
#if canImport(Glibc)
import Glibc
#endif

// The key-value log over HTTP, with callbacks on one loop:
//
//     GET /key       200 and the value, or 404
//     PUT /key       204 once the value is durable (written and flushed)
//     DELETE /key    204 once the deletion is durable, or 404
//
// Values are bytes, up to 60,000 of them (413 beyond). A PUT's body is
// gathered from the receive buffers as it arrives; the response goes out
// only once `LoggedStore` has the change on disk, and the connection's next
// request waits for it, so answers stay in request order.
//
// `HTTPKeyValueServer DATA-FILE [PORT]`: prints `listening on ADDRESS`,
// stops on SIGINT or SIGTERM.

/// A PUT whose body is still arriving.
final class Upload {
    let key: String
    var body: [UInt8] = []
    init(key: String) { self.key = key }
}

func serve(_ store: LoggedStore) -> HTTPServerHandler {
    { exchange, event in
        switch event {
        case .head(let head):
            guard let key = HTTPKey.of(head.request) else {
                try? exchange.respond(HTTPResponse(status: .badRequest), body: "the path names no key\n")
                return
            }
            switch head.request.method {
            case .get, .head:
                guard let value = store[key] else {
                    try? exchange.respond(HTTPResponse(status: .notFound))
                    return
                }
                value.withUnsafeBytes { try? exchange.respond(HTTPKey.found, body: $0) }
            case .put:
                exchange.context = Upload(key: key)
            case .delete:
                guard store[key] != nil else {
                    try? exchange.respond(HTTPResponse(status: .notFound))
                    return
                }
                store.change(key, to: nil) { error in confirm(error, on: exchange) }
            default:
                try? exchange.respond(HTTPKey.methodNotAllowed)
            }
        case .body(let bytes):
            (exchange.context as? Upload)?.body += bytes.array
        case .end:
            guard let upload = exchange.context as? Upload else { return }
            exchange.context = nil
            store.change(upload.key, to: upload.body) { error in confirm(error, on: exchange) }
        case .writable:
            break
        case .closed:
            exchange.context = nil
        }
    }
}

/// `204` for a durable change, `413` for one too large for a record, `500` for a failed log.
func confirm(_ error: EvplError?, on exchange: HTTPServerConnection) {
    guard let error else {
        try? exchange.respond(HTTPResponse(status: .noContent))
        return
    }
    let status: HTTPResponse.Status = error.code == .invalidArgument ? .contentTooLarge : .internalServerError
    try? exchange.respond(HTTPResponse(status: status), body: "\(error)\n")
}

let arguments = CommandLine.arguments.dropFirst()
guard let path = arguments.first else {
    print("usage: HTTPKeyValueServer DATA-FILE [PORT]")
    exit(2)
}
do {
    let signals = try TerminationSignals()
    let loop = try EventLoop()
    let store = try LoggedStore(loop: loop, path: path)
    let listener = try Listener(address: SocketAddress(host: "127.0.0.1", port: UInt16(arguments.dropFirst().first ?? "") ?? 0))
    loop.serveHTTP(from: listener, configuration: HTTPKey.configuration, handler: serve(store))
    let watch = try loop.watch(fd: signals.fd, interest: .readable) { watch, _ in
        watch.remove()
        listener.close()
        // Changes in flight become durable and are answered before the loop stops.
        loop.shutdownGracefully(timeout: .seconds(5)) { _ in store.close() }
    }
    print("listening on \(listener.address)")
    fflush(nil)
    loop.run()
    _ = watch
} catch {
    print("HTTPKeyValueServer: \(error)")
    exit(1)
}
