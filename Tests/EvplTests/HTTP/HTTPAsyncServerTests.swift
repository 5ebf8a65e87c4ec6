@testable import Evpl
import EvplHTTP
import HTTPTypes
import Synchronization
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// How much of its upload the slow reader has read (one such test runs at a time per backend, which share it: a diagnostic only).
let slowReaderProgress = Mutex<Int>(0)

/// The async API: a task per request, the body as an async sequence, a
/// writer with backpressure.
@Suite struct HTTPAsyncServerTests {
    /// The handler every test here serves with.
    static func respond(_ request: HTTPServerRequest, _ writer: HTTPResponseWriter) async throws {
        let loop = try #require(EventLoop.current)
        switch request.head.request.path {
        case "/echo":
            let body = try await request.body.collect(upTo: 64 << 20)
            try writer.respond(HTTPResponse(status: .ok), body: body)
        case "/slow-reader":
            // Consumes the upload slowly, noting the most buffers the loop held meanwhile.
            var total = 0
            var peak = 0
            for try await chunk in request.body {
                total += chunk.count
                slowReaderProgress.withLock { $0 = total }
                peak = max(peak, loop.bufferPool.buffersInUse - loop.bufferPool.buffersLentToKernel)
                try await loop.sleep(for: .milliseconds(1))
            }
            try writer.respond(HTTPResponse(status: .ok), body: Array("total=\(total) peak=\(peak)".utf8))
        case "/pausing-reader":
            // Reads one piece, then nothing for longer than the body timeout, then the rest.
            var total = 0
            for try await chunk in request.body {
                if total == 0 { try await loop.sleep(for: .milliseconds(800)) }
                total += chunk.count
            }
            try writer.respond(HTTPResponse(status: .ok), body: Array("total=\(total)".utf8))
        case "/stream":
            // 32 MiB in 64 KiB pieces; the queue never grows far past the high watermark.
            try writer.writeHead(HTTPResponse(status: .ok))
            var peakQueued = 0
            let piece = [UInt8](repeating: 0x61, count: 64 << 10)
            for _ in 0..<512 {
                try await writer.write(piece)
                peakQueued = max(peakQueued, loop.bufferPool.buffersInUse)
            }
            try writer.end(trailers: [HTTPField.Name("X-Peak-Buffers")!: "\(peakQueued)"])
        case "/silent":
            return
        case "/throws":
            throw EvplError(.invalidArgument, operation: "test")
        default:
            try writer.respond(HTTPResponse(status: .ok), body: Array("hello async".utf8))
        }
    }

    @Test("requests, bodies and the answers a handler forgets or fails", arguments: StreamCase.backends)
    func basics(backend: EvplProtocol.Backend) throws {
        let server = try HTTPTestServer(backend: backend, respond: Self.respond)
        let client = try RawHTTPClient(server.address)
        client.send("GET / HTTP/1.1\r\nHost: h\r\n\r\n")
        #expect(client.readResponse().map { String(decoding: $0.body, as: UTF8.self) } == "hello async")
        let upload = patternBytes(from: 7, count: 200_000)
        client.send(Array("POST /echo HTTP/1.1\r\nHost: h\r\nContent-Length: \(upload.count)\r\n\r\n".utf8) + upload)
        #expect(client.readResponse()?.body == upload)
        client.send("GET /silent HTTP/1.1\r\nHost: h\r\n\r\n")
        #expect(client.readResponse()?.status == 500)
        client.send("GET /throws HTTP/1.1\r\nHost: h\r\n\r\n")
        #expect(client.readResponse()?.status == 500)
        client.send("GET /after HTTP/1.1\r\nHost: h\r\n\r\n")
        #expect(client.readResponse()?.status == 200, "the connection did not go on after the handlers' failures")
    }

    @Test("an upload faster than the handler reads holds about the body window", arguments: StreamCase.backends)
    func slowReader(backend: EvplProtocol.Backend) throws {
        let server = try HTTPTestServer(backend: backend, limits: HTTPLimits(body: 16 << 20), configure: { $0.ioUringBufferRingEntries = 32 },
                                        respond: Self.respond)
        let client = try RawHTTPClient(server.address, timeoutSeconds: 20)
        let size = 8 << 20
        let sent = client.send(Array("POST /slow-reader HTTP/1.1\r\nHost: h\r\nContent-Length: \(size)\r\n\r\n".utf8) + [UInt8](repeating: 0x62, count: size))
        let response = client.readResponse()
        let text = String(decoding: response?.body ?? [], as: UTF8.self)
        if response == nil {
            // What the server had done, for a stall.
            let read = slowReaderProgress.withLock { $0 }
            let state = try server.onLoop { loop in
                "pool \(loop.bufferPool.buffersInUse) in use, \(loop.bufferPool.buffersLentToKernel) lent; receive pauses \(loop.statistics.receivePauses)"
            }
            Issue.record("no response: the client sent all: \(sent), the handler read \(read) of \(size) bytes; \(state)")
        }
        #expect(text.hasPrefix("total=\(size) "), "\(text)")
        let peak = Int(text.split(separator: "=").last ?? "") ?? .max
        // The window (256 KiB: 4 buffers of 64 KiB) twice over, what the kernel
        // had handed over when the pause took effect (io_uring: up to its ring's 32 buffers), and slack.
        let bound = 2 * HTTPRequestBody.window / (64 << 10) + (backend == .ioUring ? 32 : 8)
        #expect(peak <= bound, "\(peak) buffers held for an 8 MiB upload read slowly (bound \(bound))")
    }

    @Test("a handler that stops reading its body for longer than the body timeout is not cut off: the wait is its own", arguments: StreamCase.backends)
    func bodyTimeoutPausesWithTheHandler(backend: EvplProtocol.Backend) throws {
        let server = try HTTPTestServer(backend: backend, limits: HTTPLimits(body: 16 << 20), bodyTimeout: .milliseconds(300), respond: Self.respond)
        let client = try RawHTTPClient(server.address)
        let size = 2 << 20
        client.send(Array("POST /pausing-reader HTTP/1.1\r\nHost: h\r\nContent-Length: \(size)\r\n\r\n".utf8) + [UInt8](repeating: 0x63, count: size))
        let response = client.readResponse()
        #expect(response.map { String(decoding: $0.body, as: UTF8.self) } == "total=\(size)", "\(String(describing: response))")
    }

    @Test("a streamed 32 MiB response to a client that reads late waits instead of queueing", arguments: StreamCase.backends)
    func backpressuredStream(backend: EvplProtocol.Backend) throws {
        let server = try HTTPTestServer(backend: backend, configure: { $0.sendHighWatermark = 1 << 20 }, respond: Self.respond)
        let client = try RawHTTPClient(server.address, timeoutSeconds: 30)
        client.send("GET /stream HTTP/1.1\r\nHost: h\r\n\r\n")
        usleep(500_000)  // the server fills the socket, then waits
        let held = try server.onLoop { $0.bufferPool.buffersInUse - $0.bufferPool.buffersLentToKernel }
        #expect(held <= 1 + (1 << 20) / (64 << 10) + 2, "\(held) buffers held while the client reads nothing")
        let response = client.readResponse()
        #expect(response?.body.count == 32 << 20)
        #expect(response?.body.allSatisfy { $0 == 0x61 } == true)
    }
}
