import CAllocationCounter
@testable import Evpl
@testable import EvplHTTP
import HTTPTypes
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// Heap allocations per request of the HTTP server in steady state, client
/// and server on one loop, counted by the interposed allocator.
@Suite("HTTP allocations per request",
       .enabled(if: cevpl_allocation_counting_available() != 0, "a sanitizer build keeps its own allocator, so nothing counts"))
struct HTTPAllocationTests {
    /// What a keep-alive GET answered by `respond(_:body:)` costs in this
    /// debug build: 6 per request (measured 2026-12-07, both backends), all
    /// in unspecialized generic code. The release build makes 0.0023 per
    /// request (23 allocations for 10,000 more requests, counted by
    /// valgrind's heap summary of `evpl http serve`: `Benchmarks/http-cost.sh`):
    /// each head is parsed into the same swift-http-types storage. These
    /// bounds keep the counts from growing unnoticed.
    static let allowedPerRequest = 6.5
    /// A head parsed into reused storage, in this build.
    static let allowedPerHead = 0.01

    @Test("a keep-alive GET answered with respond(_:body:) allocates a bounded number of times", arguments: StreamCase.backends)
    func keepAliveGet(backend: EvplProtocol.Backend) throws {
        let loop = try makeLoop()
        let listener = try Listener(address: SocketAddress(host: "127.0.0.1", port: 0), protocol: EvplProtocol(.tcp, backend: backend))
        let ok: HTTPResponse = {
            var response = HTTPResponse(status: .ok)
            response.headerFields[.contentType] = "text/plain"
            return response
        }()
        loop.serveHTTP(from: listener) { exchange, event in
            if case .head = event { try? exchange.respond(ok, body: "hello world") }
        }
        let request = "GET /allocations HTTP/1.1\r\nHost: example.org\r\nUser-Agent: evpl-test\r\nAccept: */*\r\n\r\n"
        let rounds = 10_000
        let (allocations, failures) = try Self.countAllocations(of: request, to: listener.address, backend: backend, on: loop, warmUp: 1_000, rounds: rounds)
        let perRequest = Double(allocations) / Double(rounds)
        print("HTTP keep-alive GET over \(backend.rawValue): \(perRequest) heap allocations per request")
        #expect(perRequest <= Self.allowedPerRequest, "\(allocations) heap allocations in \(rounds) requests")
        #expect(failures == 0)
        listener.close()
        loop.closeAll()
    }
}

extension HTTPAllocationTests {
    /// Sends `request` over one keep-alive connection from `loop`, the next
    /// as each `hello world` response arrives, and counts the heap
    /// allocations of `rounds` requests after `warmUp` of them; with the
    /// sends that failed.
    static func countAllocations(of request: String, to address: SocketAddress, backend: EvplProtocol.Backend, on loop: EventLoop,
                                 warmUp: Int, rounds: Int) throws -> (allocations: UInt64, failures: Int) {
        let request = Array(request.utf8)
        // The response's length never changes: the Date field is fixed-width.
        let responseLength = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nDate: Sun, 06 Nov 1994 08:49:37 GMT\r\nContent-Length: 11\r\n\r\nhello world".utf8.count
        var completed = 0
        var failures = 0
        _ = try loop.connect(to: address, protocol: EvplProtocol(.tcp, backend: backend), segmenter: Segmenters.fixedLength(responseLength)) { connection, event in
            switch event {
            case .connected, .received:
                if case .received = event { completed += 1 }
                request.withUnsafeBytes { do { try connection.send(copying: $0) } catch { failures += 1 } }
            default:
                break
            }
        }
        try drive(loop, "warm-up requests") { completed >= warmUp }
        let target = completed + rounds
        let allocations = try drive(loop, "\(rounds) requests") { completed >= target }
        return (allocations, failures)
    }

    /// The async API's cost per request in this debug build (a task, the
    /// request and writer objects, the body sequence, swift-http-types'
    /// head kept by the task): 27 (measured 2026-12-07).
    static let allowedAsyncPerRequest = 32.0

    @Test("the async server's allocations per keep-alive GET are counted and bounded")
    func asyncKeepAliveGet() throws {
        let loop = try makeLoop()
        let listener = try Listener(address: SocketAddress(host: "127.0.0.1", port: 0), protocol: .tcp)
        loop.serveHTTP(from: listener) { _, writer in
            var response = HTTPResponse(status: .ok)
            response.headerFields[.contentType] = "text/plain"
            try writer.respond(response, body: Array("hello world".utf8))
        }
        let rounds = 5_000
        let (allocations, _) = try Self.countAllocations(of: "GET /allocations HTTP/1.1\r\nHost: example.org\r\n\r\n", to: listener.address,
                                                          backend: .auto, on: loop, warmUp: 500, rounds: rounds)
        let perRequest = Double(allocations) / Double(rounds)
        print("HTTP async keep-alive GET: \(perRequest) heap allocations per request")
        #expect(perRequest <= Self.allowedAsyncPerRequest, "\(allocations) heap allocations in \(rounds) requests")
        listener.close()
        loop.closeAll()
    }

    /// The client and the server together on one loop, in this debug
    /// build: 1.0 per request (measured 2026-12-07). In release the client
    /// makes 0.0025 per request and the server 0.0019
    /// (`Benchmarks/http-cost.sh`).
    static let allowedClientAndServerPerRequest = 1.5

    @Test("HTTPClient requests over a kept-alive connection, with one handler reused, allocate a bounded number of times")
    func clientKeepAlive() throws {
        let loop = try makeLoop()
        let listener = try Listener(address: SocketAddress(host: "127.0.0.1", port: 0), protocol: .tcp)
        loop.serveHTTP(from: listener) { exchange, event in
            if case .head = event { try? exchange.respond(HTTPResponse(status: .ok), body: "hello world") }
        }
        let client = HTTPClient(loop: loop)
        let request = HTTPRequest(method: .get, scheme: "http", authority: "\(listener.address)", path: "/allocations")
        var completed = 0
        var failures = 0
        var bodyBytes = 0
        var handler: HTTPClientHandler = { _ in }
        handler = { event in
            switch event {
            case .head:
                break
            case .body(let bytes):
                bodyBytes += bytes.count
            case .end:
                completed += 1
                client.execute(request, handler: handler)
            case .failed:
                failures += 1
            }
        }
        client.execute(request, handler: handler)
        try drive(loop, "warm-up requests") { completed >= 1_000 }
        let rounds = 10_000
        let target = completed + rounds
        let allocations = try drive(loop, "\(rounds) requests") { completed >= target }
        let perRequest = Double(allocations) / Double(rounds)
        print("HTTPClient keep-alive GET with its server on the same loop: \(perRequest) heap allocations per request")
        #expect(perRequest <= Self.allowedClientAndServerPerRequest, "\(allocations) heap allocations in \(rounds) requests")
        #expect(failures == 0 && bodyBytes >= completed * 11)
        #expect(client.idleConnectionCount <= 1)
        handler = { _ in }
        listener.close()
        loop.closeAll()
    }

    @Test("a head parsed into the storage the last head let go of allocates nothing; heads the handler keeps stay as they were parsed")
    func headParsing() throws {
        let request = Array("GET /allocations HTTP/1.1\r\nHost: example.org\r\nUser-Agent: a-user-agent-longer-than-fifteen-bytes\r\nAccept: */*\r\n\r\n".utf8)
        let other = Array("POST /other HTTP/1.1\r\nHost: example.org\r\nUser-Agent: another-agent-longer-than-fifteen\r\nContent-Length: 1\r\n\r\n".utf8)
        var parser = HTTPRequestHeads()
        let rounds = 1_000
        let released = try request.withUnsafeBytes { raw in
            _ = try parser.parse(raw, limits: .default)
            return try countingAllocations {
                for _ in 0..<rounds { _ = try parser.parse(raw, limits: .default) }
            }
        }
        let perHead = Double(released) / Double(rounds)
        print("HTTP head parsing: \(perHead) heap allocations per head")
        #expect(perHead <= HTTPAllocationTests.allowedPerHead, "\(released) heap allocations in \(rounds) heads")

        // Kept heads share storage with the parser until it writes the next
        // head: each must still read as it was parsed, alternating shapes included.
        var kept: [HTTPRequestHead] = []
        for round in 0..<100 {
            let bytes = round % 3 == 2 ? other : request
            kept.append(try bytes.withUnsafeBytes { try parser.parse($0, limits: .default) })
        }
        for (round, head) in kept.enumerated() {
            if round % 3 == 2 {
                #expect(head.request.method == .post && head.request.path == "/other", "head \(round)")
                #expect(head.request.headerFields[.userAgent] == "another-agent-longer-than-fifteen" && head.request.headerFields[.accept] == nil)
            } else {
                #expect(head.request.method == .get && head.request.path == "/allocations", "head \(round)")
                #expect(head.request.headerFields[.userAgent] == "a-user-agent-longer-than-fifteen-bytes" && head.request.headerFields[.accept] == "*/*")
                #expect(head.request.headerFields.count == 2)
            }
        }
    }
}

/// The `Date` value against dates whose IMF-fixdate RFC 9110 and the calendar fix.
@Test("Date fields are IMF-fixdate (RFC 9110 section 5.6.7)", arguments: [
    (784_111_777, "Sun, 06 Nov 1994 08:49:37 GMT"),  // RFC 9110's own example
    (0, "Thu, 01 Jan 1970 00:00:00 GMT"),
    (951_782_400, "Tue, 29 Feb 2000 00:00:00 GMT"),
    (4_102_444_799, "Thu, 31 Dec 2099 23:59:59 GMT"),
])
func imfFixdate(seconds: Int, expected: String) {
    var bytes = [UInt8](repeating: 0, count: 29)
    HTTPDate.format(secondsSinceEpoch: seconds, into: &bytes)
    #expect(String(decoding: bytes, as: UTF8.self) == expected)
}
