import ArgumentParser
import Evpl
import EvplHTTP
import EvplTLS
import HTTPTypes
#if canImport(Glibc)
import Glibc
#endif

struct HTTPCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "http",
        abstract: "HTTP/1.1 on the event loop.",
        subcommands: [HTTPServeCommand.self, HTTPGetCommand.self]
    )
}

struct HTTPServeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "serve",
        abstract: "Serve HTTP/1.0 and 1.1: GET and HEAD get 200 'hello world' (text/plain); POST and PUT read their body, then get the same. With --root, serve the files under a directory instead. Prints 'listening on <address>' when ready; exits 0 on SIGINT or SIGTERM."
    )

    @OptionGroup var server: ServerOptions

    @Option(help: "Which layer answers: callbacks on the loop, or async handlers.")
    var api: API = .callbacks

    @Option(help: "Serve the files under this directory (GET and HEAD, ranges, ETag, Last-Modified), read by the block engine.")
    var root: String?


    func run() throws {
        let signals = try failing { try TerminationSignals() }
        let endpoint = server.endpoint
        let config = try failing { try server.logging.config() }
        let listener = try failing {
            // Over TLS, ALPN names HTTP/1.1 (RFC 7301), the only protocol this server speaks.
            try Listener(address: endpoint.address(defaultPath: "/tmp/evpl-http.sock"), protocol: endpoint.evplProtocol(role: .server, applicationProtocols: ["http/1.1"]),
                         timeouts: server.timeouts, logger: config.logger)
        }
        let files = try failing { try root.map { try HTTPFileServer(root: $0) } }
        let api = self.api
        let pool = try failing {
            try EventLoopThreadPool(count: server.threads, config: config) { loop, _ in
                if let files, api == .async {
                    loop.serveHTTP(from: listener) { request, writer in try await files.respond(to: request, with: writer) }
                } else if let files {
                    loop.serveHTTP(from: listener, handler: files.handle)
                } else if api == .async {
                    loop.serveHTTP(from: listener, respond: HelloWorld.respond)
                } else {
                    loop.serveHTTP(from: listener, handler: HelloWorld.handle)
                }
            }
        }
        print("listening on \(listener.address)")
        flushStandardOutput()
        signals.wait()
        listener.close()
        _ = pool.shutdownGracefully(timeout: .seconds(5))
    }
}

struct HTTPGetCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "get",
        abstract: "Send one request and print the response as curl -i does: status line, fields, an empty line, the body. Exits 1 when the request fails."
    )

    @Argument(help: "http://HOST[:PORT]/PATH or https://HOST[:PORT]/PATH")
    var url: String

    @Option(name: .customLong("tls-ca"), help: "https: PEM CA certificates to trust (the system's when absent).")
    var certificateAuthorities: String?

    @Option(name: .customLong("tls-verify-host"), help: "https: the name the server's certificate must carry, also sent as SNI (default: the URL's host).")
    var verifyHost: String?

    @Option(help: "The method.")
    var method: String = "GET"

    @Option(name: .customLong("data"), help: "A body to send (with Content-Length).")
    var data: String?

    @Option(help: "Backend: auto, socket or io_uring.")
    var backend: EvplProtocol.Backend = .auto

    @Option(help: "Send the request this many times, one after another over kept-alive connections, and print the last response.")
    var `repeat`: Int = 1

    func validate() throws {
        guard `repeat` >= 1 else { throw ValidationError("--repeat must be at least 1") }
    }

    func run() throws {
        let secure = url.hasPrefix("https://")
        guard secure || url.hasPrefix("http://") else { throw ValidationError("an http:// or https:// URL") }
        let rest = url.dropFirst(secure ? "https://".count : "http://".count)
        let slash = rest.firstIndex(of: "/") ?? rest.endIndex
        guard let requestMethod = HTTPRequest.Method(method) else { throw ValidationError("\(method) is not a method") }
        let authority = String(rest[..<slash])
        let request = HTTPRequest(method: requestMethod, scheme: secure ? "https" : "http", authority: authority,
                                  path: slash == rest.endIndex ? "/" : String(rest[slash...]))
        var evplProtocol = EvplProtocol(.tcp, backend: backend)
        if secure {
            let host = (try? HTTPClient.hostAndPort(authority, defaultPort: 443).0) ?? authority
            var configuration = TLSConfiguration.client(serverName: verifyHost ?? host,
                                                        trustRoots: certificateAuthorities.map { .certificates(.file($0)) } ?? .system)
            // RFC 7301: the only protocol this client speaks.
            configuration.applicationProtocols = ["http/1.1"]
            let context = try failing { try TLSContext(configuration, role: .client) }
            evplProtocol = EvplProtocol(.tcp, backend: backend, tls: context)
        }
        let loop = try failing { try EventLoop() }
        let client = HTTPClient(loop: loop, configuration: HTTPClientConfiguration(evplProtocol: evplProtocol))
        var output: [UInt8] = []
        var failure: HTTPClientError?
        var done = false
        var left = `repeat`
        let body = Array((data ?? "").utf8)
        var handler: HTTPClientHandler = { _ in }
        handler = { event in
            switch event {
            case .head(let head):
                // Only the last response is printed (and formatted).
                guard left == 1 else { return }
                output += Array("\(head.version) \(head.response.status.code) \(head.response.status.reasonPhrase)\r\n".utf8)
                for field in head.response.headerFields { output += Array("\(field.name.rawName): \(field.value)\r\n".utf8) }
                output += Array("\r\n".utf8)
            case .body(let bytes):
                guard left == 1 else { return }
                bytes.forEachSegment { output.append(contentsOf: $0) }
            case .end:
                left -= 1
                if left == 0 {
                    done = true
                } else {
                    client.execute(request, body: body, handler: handler)
                }
            case .failed(let error):
                failure = error
                done = true
            }
        }
        client.execute(request, body: body, handler: handler)
        while !done { loop.runOnce() }
        // The handler sends the next repetition itself: its reference to itself ends here.
        handler = { _ in }
        // Every connection ends before the loop goes: a connection and its
        // HTTP layer hold each other until then.
        loop.closeAll()
        flushStandardOutput()
        output.withUnsafeBytes { raw in
            var written = 0
            while written < raw.count {
                let count = write(STDOUT_FILENO, raw.baseAddress! + written, raw.count - written)
                if count < 0 && errno == EINTR { continue }
                guard count > 0 else { break }
                written += count
            }
        }
        if let failure { throw CommandFailure(message: "evpl http get: \(failure)") }
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
        case .body, .writable, .closed:
            break
        }
    }

    /// The same answers from an async handler.
    @Sendable static func respond(_ request: HTTPServerRequest, _ writer: HTTPResponseWriter) async throws {
        switch request.head.request.method {
        case .get, .head:
            try writer.respond(ok, body: Array(body.utf8))
        case .post, .put:
            for try await _ in request.body {}
            try writer.respond(ok, body: Array(body.utf8))
        default:
            var refusal = HTTPResponse(status: .methodNotAllowed)
            refusal.headerFields[.allow] = "GET, HEAD, POST, PUT"
            try writer.respond(refusal)
        }
    }
}
