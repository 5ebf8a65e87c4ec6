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
    /// debug build: 8 per request (measured 2026-12-07, both backends).
    /// The release build makes 2, both in the swift-http-types head built
    /// for every request (the `HTTPFields` array and `HTTPRequest`'s
    /// pseudo-header storage; found with gdb breaking on `malloc` in
    /// `evpl http serve`); the rest is unspecialized generic code. The
    /// callbacks API has no view-based head yet (issue 27 asks for 0.01 per
    /// request); these bounds keep the counts from growing unnoticed.
    static let allowedPerRequest = 8.5
    /// The head alone, in this build.
    static let allowedPerHead = 2.5

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
        let request = Array("GET /allocations HTTP/1.1\r\nHost: example.org\r\nUser-Agent: evpl-test\r\nAccept: */*\r\n\r\n".utf8)
        // The response's length never changes: the Date field is fixed-width.
        let responseLength = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nDate: Sun, 06 Nov 1994 08:49:37 GMT\r\nContent-Length: 11\r\n\r\nhello world".utf8.count
        var completed = 0
        var failures = 0
        _ = try loop.connect(to: listener.address, protocol: EvplProtocol(.tcp, backend: backend), segmenter: Segmenters.fixedLength(responseLength)) { connection, event in
            switch event {
            case .connected, .received:
                if case .received = event { completed += 1 }
                request.withUnsafeBytes { do { try connection.send(copying: $0) } catch { failures += 1 } }
            default:
                break
            }
        }
        try drive(loop, "warm-up requests") { completed >= 1_000 }
        let rounds = 10_000
        let target = completed + rounds
        let allocations = try drive(loop, "\(rounds) requests") { completed >= target }
        let perRequest = Double(allocations) / Double(rounds)
        print("HTTP keep-alive GET over \(backend.rawValue): \(perRequest) heap allocations per request")
        #expect(perRequest <= Self.allowedPerRequest, "\(allocations) heap allocations in \(rounds) requests")
        #expect(failures == 0)
        listener.close()
        loop.closeAll()
    }
}

extension HTTPAllocationTests {
    @Test("parsing a head into swift-http-types allocates at most twice")
    func headParsing() throws {
        let request = Array("GET /allocations HTTP/1.1\r\nHost: example.org\r\nUser-Agent: evpl-test\r\nAccept: */*\r\n\r\n".utf8)
        var heads: [HTTPRequestHead] = []
        heads.reserveCapacity(2)
        let rounds = 1_000
        let allocations = try request.withUnsafeBytes { raw in
            try countingAllocations {
                for _ in 0..<rounds {
                    heads.append(try HTTPRequestHeadParser.parse(raw, limits: .default))
                    heads.removeAll(keepingCapacity: true)
                }
            }
        }
        let perHead = Double(allocations) / Double(rounds)
        print("HTTP head parsing: \(perHead) heap allocations per head")
        #expect(perHead <= HTTPAllocationTests.allowedPerHead, "\(allocations) heap allocations in \(rounds) heads")
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
