import ArgumentParser
import Evpl
import EvplHTTP
import HTTPTypes

struct HTTPCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "http",
        abstract: "HTTP/1.1 on the event loop.",
        subcommands: [HTTPServeCommand.self]
    )
}

struct HTTPServeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "serve",
        abstract: "Serve HTTP/1.0 and 1.1: GET and HEAD get 200 'hello world' (text/plain); POST and PUT read their body, then get the same. Prints 'listening on <address>' when ready; exits 0 on SIGINT or SIGTERM."
    )

    @OptionGroup var server: ServerOptions

    func run() throws {
        let signals = try failing { try TerminationSignals() }
        let endpoint = server.endpoint
        let config = try failing { try server.logging.config() }
        let listener = try failing {
            try Listener(address: endpoint.address(defaultPath: "/tmp/evpl-http.sock"), protocol: endpoint.evplProtocol(role: .server),
                         timeouts: server.timeouts, logger: config.logger)
        }
        let pool = try failing {
            try EventLoopThreadPool(count: server.threads, config: config) { loop, _ in
                loop.serveHTTP(from: listener, handler: HelloWorld.handle)
            }
        }
        print("listening on \(listener.address)")
        flushStandardOutput()
        signals.wait()
        listener.close()
        _ = pool.shutdownGracefully(timeout: .seconds(5))
    }
}

/// The benchmark's handler: `hello world` to GET and HEAD, and to POST and
/// PUT once their body has been read; 405 to the rest.
enum HelloWorld {
    static let body = "hello world"
    static let ok: HTTPResponse = {
        var response = HTTPResponse(status: .ok)
        response.headerFields[.contentType] = "text/plain"
        return response
    }()

    static func handle(_ exchange: HTTPServerConnection, _ event: HTTPServerEvent) {
        switch event {
        case .head(let head):
            switch head.request.method {
            case .get, .head: try? exchange.respond(ok, body: body)
            case .post, .put: break
            default:
                var refusal = HTTPResponse(status: .methodNotAllowed)
                refusal.headerFields[.allow] = "GET, HEAD, POST, PUT"
                try? exchange.respond(refusal)
            }
        case .end:
            if let method = exchange.request?.request.method, method == .post || method == .put {
                try? exchange.respond(ok, body: body)
            }
        case .body, .closed:
            break
        }
    }
}
