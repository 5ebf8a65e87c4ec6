@testable import Evpl
import EvplHTTP
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// Clients out to hold a server's memory or connections: each is cut off
/// or held to a stated bound, and a well-behaved client is served meanwhile.
@Suite struct HTTPHostilePeerTests {
    /// A well-behaved request gets its answer; records what it got otherwise.
    private func served(_ server: HTTPTestServer, sourceLocation: SourceLocation = #_sourceLocation) throws -> Bool {
        let client = try RawHTTPClient(server.address)
        client.send("GET /fine HTTP/1.1\r\nHost: h\r\n\r\n")
        let response = client.readResponse()
        guard response?.echoed["target"] == "/fine" else {
            Issue.record("a well-behaved client got \(response.map { "\($0)" } ?? "no response (closed: \(client.peerClosed))")", sourceLocation: sourceLocation)
            return false
        }
        return true
    }

    /// Buffers the server's loop holds for itself (not lent to the kernel's ring).
    private func buffersHeld(_ server: HTTPTestServer) throws -> Int {
        try server.onLoop { loop in loop.bufferPool.buffersInUse - loop.bufferPool.buffersLentToKernel }
    }

    @Test("slowloris: a head sent a byte at a time is cut off at the handshake timeout", arguments: StreamCase.backends)
    func slowloris(backend: EvplProtocol.Backend) throws {
        // 1 s: the well-behaved clients, on the same listener, must make it under ThreadSanitizer on a loaded machine.
        let server = try HTTPTestServer(backend: backend, timeouts: ConnectionTimeouts(handshake: .seconds(1)))
        let client = try RawHTTPClient(server.address)
        client.send("GET / HTTP/1.1\r\nHost: h\r\n")
        let started = MonotonicClock.nanoseconds()
        var cutOff = false
        while MonotonicClock.nanoseconds() - started < 8_000_000_000 {
            guard client.send(Array("X-Slow: 1\r\n".utf8), .byteAtATime) else {
                cutOff = true
                break
            }
            _ = try served(server)
            usleep(100_000)
        }
        #expect(cutOff || client.closedByServer(seconds: 1), "the slow client kept its connection")
        let elapsed = Double(MonotonicClock.nanoseconds() - started) / 1e9
        #expect(elapsed < 5, "cut off after \(elapsed) s, with a 1 s handshake timeout")
    }

    /// Sends `text` a byte every `interval` until the server closes or
    /// `seconds` pass; returns how long the server took to close, or `nil`.
    private func trickle(_ text: String, to client: RawHTTPClient, every interval: UInt32 = 100_000, for seconds: Double = 5,
                         server: HTTPTestServer) throws -> Double? {
        let started = MonotonicClock.nanoseconds()
        for byte in text.utf8 {
            let elapsed = Double(MonotonicClock.nanoseconds() - started) / 1e9
            if elapsed > seconds { return nil }
            guard client.send([byte]) else { return elapsed }
            _ = try served(server)
            usleep(interval)
        }
        return client.closedByServer(seconds: 2) ? Double(MonotonicClock.nanoseconds() - started) / 1e9 : nil
    }

    @Test("a slow head on a kept connection is cut off at the head timeout, long after the handshake", arguments: StreamCase.backends)
    func slowlorisOnKeptConnection(backend: EvplProtocol.Backend) throws {
        let server = try HTTPTestServer(backend: backend, headTimeout: .seconds(1))
        let client = try RawHTTPClient(server.address)
        client.send("GET /first HTTP/1.1\r\nHost: h\r\n\r\n")
        #expect(client.readResponse()?.status == 200)
        let closedAfter = try trickle("GET /slow HTTP/1.1\r\nHost: h\r\n" + String(repeating: "X-Slow: 1\r\n", count: 10), to: client, for: 8, server: server)
        #expect(closedAfter != nil, "the slow head kept its connection")
        #expect((closedAfter ?? 99) < 4, "cut off after \(closedAfter ?? 99) s with a 1 s head timeout")
        #expect(try server.onLoop { $0.statistics.messageTimeouts } == 1)
    }

    @Test("a body that stalls is cut off at the body timeout; one that trickles steadily is served", arguments: StreamCase.backends)
    func stalledBody(backend: EvplProtocol.Backend) throws {
        let server = try HTTPTestServer(backend: backend, bodyTimeout: .milliseconds(500))
        let stalled = try RawHTTPClient(server.address)
        stalled.send("POST /stall HTTP/1.1\r\nHost: h\r\nContent-Length: 100\r\n\r\n0123456789")
        let started = MonotonicClock.nanoseconds()
        #expect(stalled.closedByServer(seconds: 3), "a stalled body kept its connection")
        let waited = Double(MonotonicClock.nanoseconds() - started) / 1e9
        #expect(waited < 2, "cut off after \(waited) s with a 0.5 s body timeout")

        let steady = try RawHTTPClient(server.address)
        steady.send("POST /steady HTTP/1.1\r\nHost: h\r\nContent-Length: 12\r\n\r\n")
        // 12 bytes over about 1.2 s: each arrives well within the timeout, the whole body does not.
        for byte in "hello, world".utf8 {
            #expect(steady.send([byte]))
            usleep(100_000)
        }
        let response = steady.readResponse()
        #expect(response?.status == 200)
        #expect(response?.echoed["body"] == Array("hello, world".utf8).map { String(format2: $0) }.joined())
    }

    /// Writes `next()` until the server stops taking bytes for
    /// `stallSeconds`, or, when `untilAnswered`, until it has something to
    /// read (as curl does, which reads while it uploads); returns the bytes
    /// the server took.
    private func writeUntilStalled(_ fd: Int32, stallSeconds: Int32 = 1, limit: Int, untilAnswered: Bool = false, next: () -> [UInt8]) -> Int {
        _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
        var written = 0
        var pending: [UInt8] = []
        while written < limit {
            if untilAnswered {
                var entry = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
                if poll(&entry, 1, 0) > 0 { break }
            }
            if pending.isEmpty { pending = next() }
            let count = pending.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            if count > 0 {
                written += count
                pending.removeFirst(count)
                continue
            }
            guard count < 0 && errno == EAGAIN else { break }
            var entry = pollfd(fd: fd, events: Int16(POLLOUT), revents: 0)
            if poll(&entry, 1, stallSeconds * 1000) == 0 || entry.revents & Int16(POLLOUT) == 0 { break }
        }
        return written
    }

    @Test("a client that pipelines requests and never reads holds bounded memory", arguments: StreamCase.backends)
    func pipelinedFloodWithoutReading(backend: EvplProtocol.Backend) throws {
        let server = try HTTPTestServer(backend: backend) { config in
            config.sendHighWatermark = 1 << 20
            config.ioUringBufferRingEntries = 32
        }
        let flooder = try RawHTTPClient(server.address)
        let request = Array("GET /flood HTTP/1.1\r\nHost: h\r\n\r\n".utf8)
        let batch = Array([[UInt8]](repeating: request, count: 256).joined())
        let written = writeUntilStalled(flooder.fd, limit: 1 << 30) { batch }
        #expect(written < 256 << 20, "the server kept reading: \(written) bytes taken")
        let held = try buffersHeld(server)
        // 1 MiB of queued responses (16 buffers of 64 KiB), the request being
        // read and the response in hand; io_uring adds what its multishot
        // receive had taken in before the pause reached the kernel, at most
        // the 32 buffers of its ring.
        let bound = 24 + (backend == .ioUring ? 32 : 0)
        #expect(held <= bound, "\(held) buffers held for one client that reads nothing (bound \(bound))")
        _ = try served(server)
    }

    @Test("a chunked upload past the body limit gets 413 after about the limit, then is cut off", arguments: StreamCase.backends)
    func endlessChunkedUpload(backend: EvplProtocol.Backend) throws {
        let server = try HTTPTestServer(backend: backend, limits: HTTPLimits(body: 1 << 20))
        let client = try RawHTTPClient(server.address)
        client.send("POST /up HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n")
        let chunk = Array("10000\r\n".utf8) + [UInt8](repeating: 0x61, count: 0x10000) + Array("\r\n".utf8)
        // Up to 10 GiB; the server stops taking bytes long before.
        let written = writeUntilStalled(client.fd, limit: 10 << 30, untilAnswered: true) { chunk }
        // The limit, the kernel's socket buffers, and what the server reads and drops after its answer.
        #expect(written < 48 << 20, "\(written) bytes taken against a 1 MiB limit")
        _ = fcntl(client.fd, F_SETFL, fcntl(client.fd, F_GETFL) & ~O_NONBLOCK)
        let response = client.readResponse()
        #expect(response?.status == 413, "\(String(describing: response))")
        #expect(response?.field("Connection") == "close")
        // Uploading on regardless: the server reads and drops at most 16 MiB more, then resets the stream.
        _ = fcntl(client.fd, F_SETFL, fcntl(client.fd, F_GETFL) | O_NONBLOCK)
        let afterAnswer = writeUntilStalled(client.fd, stallSeconds: 5, limit: 1 << 30) { chunk }
        #expect(afterAnswer < 48 << 20, "\(afterAnswer) bytes taken after the 413")
        #expect(try buffersHeld(server) <= 8)
        _ = try served(server)
    }
}
