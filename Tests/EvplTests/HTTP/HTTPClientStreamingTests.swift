@testable import Evpl
import EvplHTTP
import HTTPTypes
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// Request bodies the client streams (`HTTPClient.stream`), read by the
/// library's server on the same loop: every byte in order, the framing the
/// writer chose, backpressure, and the misuses and early answers a writer meets.
@Suite struct HTTPClientStreamingTests {
    /// Answers each request once its body has ended with what arrived:
    /// `framing bytes checksum trailers`.
    static func summarize(_ exchange: HTTPServerConnection, _ event: HTTPServerEvent) {
        final class Received {
            var bytes = 0
            var checksum: UInt64 = 0
        }
        switch event {
        case .head:
            exchange.context = Received()
        case .body(let bytes):
            guard let received = exchange.context as? Received else { return }
            bytes.forEachSegment { segment in
                for byte in segment { received.checksum = received.checksum &* 31 &+ UInt64(byte) }
                received.bytes += segment.count
            }
        case .end(let trailers):
            guard let received = exchange.context as? Received, let head = exchange.request else { return }
            let framing: String
            switch head.bodyFraming {
            case .chunked: framing = "chunked"
            case .length(let length): framing = "length:\(length)"
            default: framing = "\(head.bodyFraming)"
            }
            let trailer = trailers?[HTTPField.Name("X-Sum")!] ?? "-"
            try? exchange.respond(HTTPResponse(status: .ok), body: "\(framing) \(received.bytes) \(received.checksum) \(trailer)")
        case .writable, .closed:
            break
        }
    }

    static func checksum(_ bytes: [UInt8]) -> UInt64 {
        bytes.reduce(UInt64(0)) { $0 &* 31 &+ UInt64($1) }
    }

    @Test("a chunked upload of 24 MiB in random pieces, written only while the send queue has room, arrives whole with its trailers", arguments: StreamCase.backends)
    func chunkedUpload(backend: EvplProtocol.Backend) throws {
        let loop = try makeLoop()
        let listener = try Listener(address: SocketAddress(host: "127.0.0.1", port: 0), protocol: EvplProtocol(.tcp, backend: backend))
        loop.serveHTTP(from: listener, configuration: HTTPServerConfiguration(limits: HTTPLimits(body: 32 << 20)), handler: Self.summarize)
        let client = HTTPClient(loop: loop, configuration: HTTPClientConfiguration(evplProtocol: EvplProtocol(.tcp, backend: backend)))
        let request = HTTPRequest(method: .put, scheme: "http", authority: "\(listener.address)", path: "/upload")

        var generator = SystemRandomNumberGenerator()
        // Pieces are random slices of one random megabyte: random enough, and quick in a debug build.
        let source = (0..<(1 << 20)).map { _ in UInt8.random(in: 0...255, using: &generator) }
        let total = 24 << 20
        var sent: [UInt8] = []
        sent.reserveCapacity(total)
        let outcome = ClientOutcome()
        let writer = client.stream(request, handler: outcome.handle)
        let highWatermark = loop.config.sendHighWatermark
        var mostQueued = 0
        var writeError: HTTPClientError?
        func pump() {
            while sent.count < total && writer.queuedBytes < highWatermark {
                let length = min(Int.random(in: 1...100_000, using: &generator), total - sent.count)
                let start = Int.random(in: 0...(source.count - length), using: &generator)
                let cut = Array(source[start..<(start + length)])
                do {
                    try writer.write(cut)
                } catch {
                    writeError = error
                    return
                }
                sent += cut
                mostQueued = max(mostQueued, writer.queuedBytes)
            }
            if sent.count == total && !writer.ended {
                do {
                    try writer.end(trailers: [HTTPField.Name("X-Sum")!: "\(Self.checksum(sent))"])
                } catch {
                    writeError = error
                }
            }
        }
        writer.onWritable = { pump() }
        pump()
        try spin(loop, seconds: 60, "the streamed upload") { outcome.done || writeError != nil }
        #expect(writeError == nil, "\(String(describing: writeError))")
        #expect(outcome.error == nil, "\(String(describing: outcome.error))")
        let summary = String(decoding: outcome.body, as: UTF8.self)
        #expect(summary == "chunked \(total) \(Self.checksum(sent)) \(Self.checksum(sent))", "\(summary)")
        #expect(mostQueued < highWatermark + 100_100, "the writer queued \(mostQueued) bytes")
        // The connection is kept: a second request reuses it.
        #expect(client.idleConnectionCount == 1)
        listener.close()
        loop.closeAll()
    }

    @Test("a streamed body with a Content-Length: sent as a length, past it refused, short of it abandoned")
    func lengthDelimited() throws {
        let loop = try makeLoop()
        let listener = try Listener(address: SocketAddress(host: "127.0.0.1", port: 0), protocol: .tcp)
        loop.serveHTTP(from: listener, handler: Self.summarize)
        let client = HTTPClient(loop: loop)
        let request = HTTPRequest(method: .post, scheme: "http", authority: "\(listener.address)", path: "/")

        let whole = ClientOutcome()
        let writer = client.stream(request, bodyLength: 10, handler: whole.handle)
        try writer.write(Array("01234".utf8))
        #expect(throws: HTTPClientError.self) { try writer.write(Array("too long!".utf8)) }
        try writer.write(Array("56789".utf8))
        try writer.end()
        #expect(throws: HTTPClientError.self) { try writer.write(Array("x".utf8)) }
        try spin(loop, seconds: 10, "the length-delimited upload") { whole.done }
        #expect(String(decoding: whole.body, as: UTF8.self) == "length:10 10 \(Self.checksum(Array("0123456789".utf8))) -")

        let short = ClientOutcome()
        let shortWriter = client.stream(request, bodyLength: 10, handler: short.handle)
        try shortWriter.write(Array("0123".utf8))
        #expect(throws: HTTPClientError.self) { try shortWriter.end() }
        try spin(loop, seconds: 10, "the abandoned upload") { short.done }
        #expect(short.error?.kind == .closedEarly && short.head == nil, "\(String(describing: short.error))")
        listener.close()
        loop.closeAll()
    }

    @Test("a server that answers before the body ends (413): the response arrives, later writes fail, the connection is not kept")
    func earlyAnswer() throws {
        let loop = try makeLoop()
        let listener = try Listener(address: SocketAddress(host: "127.0.0.1", port: 0), protocol: .tcp)
        loop.serveHTTP(from: listener, configuration: HTTPServerConfiguration(limits: HTTPLimits(body: 1000)), handler: Self.summarize)
        let client = HTTPClient(loop: loop)
        let request = HTTPRequest(method: .put, scheme: "http", authority: "\(listener.address)", path: "/")
        let outcome = ClientOutcome()
        let writer = client.stream(request, handler: outcome.handle)
        try writer.write([UInt8](repeating: 7, count: 5000))
        try spin(loop, seconds: 10, "the early answer") { outcome.done }
        #expect(outcome.head?.response.status == .contentTooLarge, "\(String(describing: outcome.head)) \(String(describing: outcome.error))")
        #expect(throws: HTTPClientError.self) { try writer.write([1, 2, 3]) }
        #expect(client.idleConnectionCount == 0)
        listener.close()
        loop.closeAll()
    }

    @Test("a body written before the host name resolves waits for the connection, then follows the head")
    func writtenWhileResolving() throws {
        let loop = try makeLoop()
        let listener = try Listener(address: SocketAddress(host: "127.0.0.1", port: 0), protocol: .tcp)
        loop.serveHTTP(from: listener, handler: Self.summarize)
        let client = HTTPClient(loop: loop)
        let request = HTTPRequest(method: .put, scheme: "http", authority: "localhost:\(listener.address.port!)", path: "/")
        let outcome = ClientOutcome()
        let writer = client.stream(request, handler: outcome.handle)
        let body = Array("written before the name resolved".utf8)
        try writer.write(body)
        #expect(writer.queuedBytes > 0)
        try writer.end()
        try spin(loop, seconds: 10, "the upload to localhost") { outcome.done }
        #expect(String(decoding: outcome.body, as: UTF8.self) == "chunked \(body.count) \(Self.checksum(body)) -", "\(String(describing: outcome.error))")
        listener.close()
        loop.closeAll()
    }

    @Test("an upload that lasts longer than the response timeout is not cut off while the server takes it")
    func slowUploadWithinTimeout() throws {
        let loop = try makeLoop()
        let listener = try Listener(address: SocketAddress(host: "127.0.0.1", port: 0), protocol: .tcp)
        loop.serveHTTP(from: listener, handler: Self.summarize)
        let client = HTTPClient(loop: loop, configuration: HTTPClientConfiguration(responseTimeout: .milliseconds(300)))
        let request = HTTPRequest(method: .put, scheme: "http", authority: "\(listener.address)", path: "/")
        let outcome = ClientOutcome()
        let writer = client.stream(request, handler: outcome.handle)
        var pieces = 0
        var sent: [UInt8] = []
        // A piece every 100 ms for a second: three times the response timeout.
        let timer = try loop.addTimer(every: .milliseconds(100)) { timer in
            let piece = Array("piece \(pieces);".utf8)
            pieces += 1
            sent += piece
            try? writer.write(piece)
            if pieces == 10 {
                try? writer.end()
                timer.cancel()
            }
        }
        try spin(loop, seconds: 10, "the slow upload") { outcome.done }
        timer.cancel()
        #expect(outcome.error == nil, "\(String(describing: outcome.error))")
        #expect(String(decoding: outcome.body, as: UTF8.self) == "chunked \(sent.count) \(Self.checksum(sent)) -")
        listener.close()
        loop.closeAll()
    }
}
