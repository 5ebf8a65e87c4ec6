@testable import Evpl
import EvplHTTP
import HTTPTypes
import Synchronization
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// What a client request ended with, as its handler saw it.
final class ClientOutcome {
    var head: HTTPResponseHead?
    var body: [UInt8] = []
    var trailers: HTTPFields?
    var error: HTTPClientError?
    var ended = false
    var events = 0

    var done: Bool { ended || error != nil }

    func handle(_ event: HTTPClientEvent) {
        events += 1
        switch event {
        case .head(let head): self.head = head
        case .body(let bytes): body += bytes.array
        case .end(let trailers):
            self.trailers = trailers
            ended = true
        case .failed(let error): self.error = error
        }
    }
}

/// Sends `request` with `client` and runs the loop until it ends.
func fetch(_ client: HTTPClient, _ request: HTTPRequest, body: [UInt8] = [], seconds: Double = 10) throws -> ClientOutcome {
    let outcome = ClientOutcome()
    client.execute(request, body: body) { outcome.handle($0) }
    try spin(client.loop, seconds: seconds, "the response to \(request.method) \(request.path ?? "")") { outcome.done }
    return outcome
}

func get(_ address: SocketAddress, _ path: String, method: HTTPRequest.Method = .get, fields: HTTPFields = [:]) -> HTTPRequest {
    HTTPRequest(method: method, scheme: "http", authority: "\(address)", path: path, headerFields: fields)
}

/// Reads one byte, again when a signal interrupts the read; false at the end or on error.
private func readByte(_ fd: Int32, _ byte: inout UInt8) -> Bool {
    while true {
        let count = read(fd, &byte, 1)
        if count < 0 && errno == EINTR { continue }
        return count == 1
    }
}

/// A plain socket server on a thread of its own that answers each
/// connection's first request with canned bytes, then closes or not.
final class CannedServer: Sendable {
    let address: SocketAddress
    private let thread: TestThread
    private let listenFD: Int32
    /// Requests read, over every connection.
    let log = RequestLog()

    final class RequestLog: Sendable {
        let requests = Mutex<[String]>([])
    }

    init(_ response: [UInt8], closeAfter: Bool = true, connections: Int = 1) throws {
        let (fd, bound) = try rawListen(SocketAddress(host: "127.0.0.1", port: 0))
        listenFD = fd
        address = bound
        let log = self.log
        thread = TestThread {
            for _ in 0..<connections {
                let client = accept(fd, nil, nil)
                guard client >= 0 else { return }
                setReceiveTimeout(client, seconds: 5)
                var head: [UInt8] = []
                var byte: UInt8 = 0
                while readByte(client, &byte) {
                    head.append(byte)
                    if head.count >= 4 && head.suffix(4) == [13, 10, 13, 10] { break }
                }
                log.requests.withLock { $0.append(String(decoding: head, as: UTF8.self)) }
                _ = rawWriteAll(client, response)
                if closeAfter {
                    shutdown(client, Int32(SHUT_WR))
                    // Read until the client closes, so the close is orderly.
                    while readByte(client, &byte) {}
                } else {
                    usleep(2_000_000)
                }
                close(client)
            }
        }
    }

    deinit {
        shutdown(listenFD, Int32(SHUT_RDWR))
        close(listenFD)
        thread.join()
    }
}

@Suite struct HTTPClientTests {
    /// A response a raw server sends, and what RFC 9112 says the client makes of it.
    struct ResponseCase: CustomTestStringConvertible, Sendable {
        var name: String
        var wire: String
        var method: HTTPRequest.Method = .get
        /// The body the client must deliver, or nil when it must fail with `failure`.
        var body: String?
        var failure: HTTPClientError.Kind?
        var status = 200
        var testDescription: String { name }
    }

    static let responses: [ResponseCase] = [
        ResponseCase(name: "content-length", wire: "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello", body: "hello"),
        ResponseCase(name: "chunked with extension and trailer",
                     wire: "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;x=1\r\nhello\r\n6\r\n world\r\n0\r\nX-T: 1\r\n\r\n", body: "hello world"),
        ResponseCase(name: "until close (RFC 9112 6.3 item 8)", wire: "HTTP/1.1 200 OK\r\n\r\nto the end", body: "to the end"),
        ResponseCase(name: "HTTP/1.0 until close", wire: "HTTP/1.0 200 OK\r\n\r\nold", body: "old"),
        ResponseCase(name: "100 then 200 (interim responses skipped)", wire: "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", body: "ok"),
        ResponseCase(name: "HEAD: Content-Length without a body", wire: "HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n", method: .head, body: ""),
        ResponseCase(name: "204 has no body", wire: "HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n", body: "", status: 204),
        ResponseCase(name: "304 has no body whatever its length says", wire: "HTTP/1.1 304 Not Modified\r\nContent-Length: 10\r\n\r\n", body: "", status: 304),
        ResponseCase(name: "reason phrase empty", wire: "HTTP/1.1 200 \r\nContent-Length: 0\r\n\r\n", body: ""),
        ResponseCase(name: "length and chunked (splitting)", wire: "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
                     failure: .malformedResponse),
        ResponseCase(name: "Transfer-Encoding in HTTP/1.0 (RFC 9112 6.1: faulty framing)",
                     wire: "HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n", failure: .malformedResponse),
        ResponseCase(name: "two lengths", wire: "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd", failure: .malformedResponse),
        ResponseCase(name: "length not a number", wire: "HTTP/1.1 200 OK\r\nContent-Length: 3x\r\n\r\nabc", failure: .malformedResponse),
        ResponseCase(name: "status not digits", wire: "HTTP/1.1 2OO OK\r\nContent-Length: 0\r\n\r\n", failure: .malformedResponse),
        ResponseCase(name: "version 2", wire: "HTTP/2.0 200 OK\r\nContent-Length: 0\r\n\r\n", failure: .malformedResponse),
        ResponseCase(name: "bare LF", wire: "HTTP/1.1 200 OK\nContent-Length: 0\n\n", failure: .malformedResponse),
        ResponseCase(name: "obs-fold", wire: "HTTP/1.1 200 OK\r\nX-A: 1\r\n 2\r\nContent-Length: 0\r\n\r\n", failure: .malformedResponse),
        ResponseCase(name: "bad chunk size", wire: "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", failure: .malformedResponse),
        ResponseCase(name: "101 unasked", wire: "HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\n\r\n", failure: .malformedResponse),
        ResponseCase(name: "body cut short", wire: "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhello", failure: .closedEarly),
        ResponseCase(name: "chunked cut short", wire: "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhel", failure: .closedEarly),
        ResponseCase(name: "no response at all", wire: "", failure: .closedEarly),
        ResponseCase(name: "length above the limit", wire: "HTTP/1.1 200 OK\r\nContent-Length: 2000000\r\n\r\n", failure: .bodyTooLarge),
    ]

    @Test("responses a raw server sends: each framed as RFC 9112 says, or a typed error", arguments: responses, StreamCase.backends)
    func rawResponses(_ response: ResponseCase, backend: EvplProtocol.Backend) throws {
        let server = try CannedServer(Array(response.wire.utf8))
        let loop = try makeLoop()
        let client = HTTPClient(loop: loop, configuration: HTTPClientConfiguration(evplProtocol: EvplProtocol(.tcp, backend: backend),
                                                                                   limits: HTTPLimits(body: 1 << 20)))
        let outcome = try fetch(client, get(server.address, "/case", method: response.method))
        if let failure = response.failure {
            #expect(outcome.error?.kind == failure, "\(String(describing: outcome.error))")
            #expect(!outcome.ended)
        } else {
            #expect(outcome.error == nil, "\(String(describing: outcome.error))")
            #expect(outcome.head?.response.status.code == response.status)
            #expect(String(decoding: outcome.body, as: UTF8.self) == response.body)
        }
        let request = server.log.requests.withLock { $0.first } ?? ""
        #expect(request.hasPrefix("\(response.method.rawValue) /case HTTP/1.1\r\nHost: \(server.address)\r\n"), "\(request)")
        try spin(loop, seconds: 5, "connections to close") { loop.bufferPool.buffersInUse == loop.bufferPool.buffersLentToKernel || client.idleConnectionCount > 0 }
    }

    @Test("a server that never answers: the request times out", arguments: StreamCase.backends)
    func responseTimeout(backend: EvplProtocol.Backend) throws {
        let (fd, address) = try rawListen(SocketAddress(host: "127.0.0.1", port: 0))
        defer { close(fd) }
        let loop = try makeLoop()
        let client = HTTPClient(loop: loop, configuration: HTTPClientConfiguration(evplProtocol: EvplProtocol(.tcp, backend: backend),
                                                                                   responseTimeout: .milliseconds(300)))
        let started = MonotonicClock.nanoseconds()
        let outcome = try fetch(client, get(address, "/silent"))
        let elapsed = Double(MonotonicClock.nanoseconds() - started) / 1e9
        #expect(outcome.error?.kind == .timedOut, "\(String(describing: outcome.error))")
        #expect(elapsed < 2, "timed out after \(elapsed) s")
    }

    @Test("nothing listening: a connect error", arguments: StreamCase.backends)
    func refused(backend: EvplProtocol.Backend) throws {
        let (fd, address) = try rawListen(SocketAddress(host: "127.0.0.1", port: 0))
        close(fd)
        let loop = try makeLoop()
        let client = HTTPClient(loop: loop, configuration: HTTPClientConfiguration(evplProtocol: EvplProtocol(.tcp, backend: backend)))
        let outcome = try fetch(client, get(address, "/"))
        #expect(outcome.error?.kind == .connect)
        #expect(outcome.error?.underlying?.code == .connectionRefused)
    }

    @Test("a host name resolves off the loop: requests to it wait together and are sent; a name that does not resolve fails them")
    func nameResolution() throws {
        let loop = try makeLoop()
        let listener = try Listener(address: SocketAddress(host: "127.0.0.1", port: 0), protocol: .tcp)
        loop.serveHTTP(from: listener) { exchange, event in
            if case .head(let head) = event { try? exchange.respond(HTTPResponse(status: .ok), body: head.request.path ?? "") }
        }
        let client = HTTPClient(loop: loop)
        let outcomes = (0..<3).map { _ in ClientOutcome() }
        for (index, outcome) in outcomes.enumerated() {
            client.execute(HTTPRequest(method: .get, scheme: "http", authority: "localhost:\(listener.address.port!)", path: "/\(index)"),
                           handler: outcome.handle)
        }
        // Nothing can have been answered before the loop ran: the name was not resolved on it.
        #expect(outcomes.allSatisfy { $0.events == 0 })
        try spin(loop, seconds: 10, "three requests to localhost") { outcomes.allSatisfy(\.done) }
        for (index, outcome) in outcomes.enumerated() {
            #expect(outcome.error == nil && String(decoding: outcome.body, as: UTF8.self) == "/\(index)", "\(String(describing: outcome.error))")
        }
        let missing = try fetch(client, HTTPRequest(method: .get, scheme: "http", authority: "no-such-host.invalid:80", path: "/"))
        #expect(missing.error?.kind == .invalidRequest, "\(String(describing: missing.error))")
        listener.close()
        loop.closeAll()
    }

    @Test("an https request on a client without TLS is refused before anything is sent")
    func httpsWithoutTLS() throws {
        let (fd, address) = try rawListen(SocketAddress(host: "127.0.0.1", port: 0))
        defer { close(fd) }
        let loop = try makeLoop()
        let client = HTTPClient(loop: loop)
        var request = get(address, "/")
        request.scheme = "https"
        let outcome = try fetch(client, request)
        #expect(outcome.error?.kind == .invalidRequest, "\(String(describing: outcome.error))")
    }

    /// Python's ThreadingHTTPServer, HTTP/1.1, on a free port: its port once it serves.
    final class PythonServer {
        let pid: pid_t
        let port: UInt16

        static let script = """
        import http.server, sys
        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            def log_message(self, *args): pass
            def do_GET(self):
                if self.path == "/chunked":
                    self.send_response(200)
                    self.send_header("Transfer-Encoding", "chunked")
                    self.end_headers()
                    for piece in (b"chunked ", b"from ", b"python"):
                        self.wfile.write(b"%x\\r\\n%s\\r\\n" % (len(piece), piece))
                    self.wfile.write(b"0\\r\\n\\r\\n")
                    return
                body = ("path=%s" % self.path).encode()
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
            def do_HEAD(self):
                self.send_response(200)
                self.send_header("Content-Length", "12345")
                self.end_headers()
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                self.send_response(201)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        print("port", server.server_address[1], flush=True)
        server.serve_forever()
        """

        init() throws {
            let path = "/tmp/evpl-http-server-\(getpid())-\(UniqueName.next()).py"
            let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
            try #require(fd >= 0)
            try #require(rawWriteAll(fd, Array(Self.script.utf8)))
            close(fd)
            // Debian's python3 itself, not a wrapper that would outlive a SIGTERM.
            let (pid, output) = try spawnProcess("/usr/bin/python3", [path])
            self.pid = pid
            var line: [UInt8] = []
            var byte: UInt8 = 0
            while readByte(output, &byte) && byte != 10 { line.append(byte) }
            close(output)
            unlink(path)
            port = try #require(UInt16(String(decoding: line, as: UTF8.self).split(separator: " ").last ?? ""))
        }

        deinit {
            // SIGKILL: a child inherits this process's signal mask, where
            // the termination-signal tests may have blocked SIGTERM.
            kill(pid, SIGKILL)
            _ = exitStatus(of: pid)
        }
    }

    @Test("against Python's ThreadingHTTPServer: keep-alive, chunked, HEAD, POST, and the async form", arguments: StreamCase.backends)
    func python(backend: EvplProtocol.Backend) throws {
        let python = try PythonServer()
        defer { withExtendedLifetime(python) {} }
        let address = try SocketAddress(host: "127.0.0.1", port: python.port)
        let loop = try makeLoop()
        let client = HTTPClient(loop: loop, configuration: HTTPClientConfiguration(evplProtocol: EvplProtocol(.tcp, backend: backend)))
        for index in 0..<3 {
            let outcome = try fetch(client, get(address, "/k\(index)"))
            #expect(String(decoding: outcome.body, as: UTF8.self) == "path=/k\(index)")
            #expect(client.idleConnectionCount == 1, "the connection was not kept")
        }
        let chunked = try fetch(client, get(address, "/chunked"))
        #expect(chunked.head?.bodyFraming == .chunked)
        #expect(String(decoding: chunked.body, as: UTF8.self) == "chunked from python")
        let head = try fetch(client, get(address, "/h", method: .head))
        #expect(head.head?.response.headerFields[.contentLength] == "12345")
        #expect(head.body.isEmpty && head.ended)
        let post = try fetch(client, get(address, "/p", method: .post), body: patternBytes(from: 0, count: 100_000))
        #expect(post.head?.response.status.code == 201)
        #expect(post.body == patternBytes(from: 0, count: 100_000))

        let onLoop = OnLoopValue(client)
        let request = get(address, "/async")
        try runTask(on: loop, "the async request") {
            let response = try await onLoop.value.execute(request)
            #expect(String(decoding: response.body, as: UTF8.self) == "path=/async")
            #expect(response.head.response.status == .ok)
        }
        client.closeIdleConnections()
    }

    @Test("against nginx: keep-alive, and a kept connection nginx closed is replaced for an idempotent request", arguments: StreamCase.backends)
    func nginx(backend: EvplProtocol.Backend) throws {
        try #require(access("/usr/sbin/nginx", X_OK) == 0, "nginx is missing: apt-get install -y nginx-light (Scripts/bootstrap.sh)")
        let (probe, free) = try rawListen(SocketAddress(host: "127.0.0.1", port: 0))
        close(probe)
        let port = free.port!
        let directory = "/tmp/evpl-nginx-\(getpid())-\(UniqueName.next())"
        mkdir(directory, 0o700)
        let configuration = """
        master_process off;
        daemon off;
        pid \(directory)/nginx.pid;
        error_log \(directory)/error.log;
        events { worker_connections 64; }
        http {
            access_log off;
            keepalive_timeout 1s;
            server {
                listen 127.0.0.1:\(port);
                location / { default_type text/plain; return 200 "nginx says $uri"; }
            }
        }
        """
        let file = open("\(directory)/nginx.conf", O_WRONLY | O_CREAT | O_TRUNC, 0o600)
        try #require(rawWriteAll(file, Array(configuration.utf8)))
        close(file)
        let (pid, output) = try spawnProcess("/usr/sbin/nginx", ["-c", "\(directory)/nginx.conf", "-p", directory])
        close(output)
        defer {
            // One process (master_process off), killed outright: SIGTERM may be blocked (see PythonServer).
            kill(pid, SIGKILL)
            _ = exitStatus(of: pid)
            _ = try? runShell("rm -rf \(directory)")
        }
        let address = try SocketAddress(host: "127.0.0.1", port: port)
        let loop = try makeLoop()
        let client = HTTPClient(loop: loop, configuration: HTTPClientConfiguration(evplProtocol: EvplProtocol(.tcp, backend: backend)))
        var first: ClientOutcome?
        for _ in 0..<100 {
            first = try fetch(client, get(address, "/one"))
            if first?.ended == true { break }
            usleep(50_000)  // nginx still starting
        }
        #expect(String(decoding: first?.body ?? [], as: UTF8.self) == "nginx says /one")
        let second = try fetch(client, get(address, "/two"))
        #expect(String(decoding: second.body, as: UTF8.self) == "nginx says /two")
        #expect(client.idleConnectionCount == 1)
        // nginx closes the kept connection after 1 s; the client sees it and asks on a new one.
        usleep(1_500_000)
        let third = try fetch(client, get(address, "/three"))
        #expect(third.error == nil, "\(String(describing: third.error))")
        #expect(String(decoding: third.body, as: UTF8.self) == "nginx says /three")
    }
}
