import Evpl
import Testing
#if canImport(Glibc)
import Glibc
#endif

@Suite("Framing")
struct FramingTests {
    static func bigEndian(_ value: Int) -> [UInt8] {
        (0..<4).map { UInt8(truncatingIfNeeded: value >> (8 * (3 - $0))) }
    }

    /// A length-prefixed message: 4-byte big-endian payload length, then the payload.
    static func framed(_ payload: [UInt8]) -> [UInt8] {
        bigEndian(payload.count) + payload
    }

    @Test("10,000 framed messages, at most 100 in flight: each echoed once, whole and in order",
          arguments: StreamCase.core)
    func windowedEcho(_ streamCase: StreamCase) throws {
        let total = 10_000
        let window = 100
        let loop = try makeLoop()
        let listener = try Listener(address: streamCase.listenAddress(), protocol: streamCase.evplProtocol)

        var serverMessages = 0
        var serverMalformed = 0
        var serverDisconnects = 0
        var serverError: EvplError?
        loop.attach(to: listener) { connection in
            connection.segmenter = Segmenters.lengthPrefixed32()
            connection.handler = { connection, event in
                switch event {
                case .received(let message):
                    serverMessages += 1
                    if message.count != 8 { serverMalformed += 1 }
                    message.forEachSegment { try? connection.send(copying: $0) }
                case .disconnected(let error):
                    serverDisconnects += 1
                    serverError = error
                default:
                    break
                }
            }
        }

        var sent = 0
        var delivered = 0
        var deliveries = [Int](repeating: 0, count: total)
        var outOfOrder = 0
        var malformed = 0
        var maxInFlight = 0
        var sendFailures = 0
        let client = EventLog()
        func sendMore(_ connection: Connection) {
            while sent < total && sent - delivered < window {
                do { try connection.send(Self.framed(Self.bigEndian(sent))) } catch { sendFailures += 1 }
                sent += 1
                maxInFlight = max(maxInFlight, sent - delivered)
            }
            if delivered == total { connection.finish() }
        }
        _ = try loop.connect(to: listener.address, protocol: streamCase.evplProtocol, segmenter: Segmenters.lengthPrefixed32()) { connection, event in
            switch event {
            case .connected:
                client.handle(connection, event)
                sendMore(connection)
            case .received(let message):
                guard message.count == 8, message.loadBigEndianUInt32() == 4 else {
                    malformed += 1
                    return
                }
                let sequence = Int(message.loadBigEndianUInt32(at: 4))
                if sequence < total { deliveries[sequence] += 1 } else { malformed += 1 }
                if sequence != delivered { outOfOrder += 1 }
                delivered += 1
                sendMore(connection)
            default:
                client.handle(connection, event)
            }
        }

        try spin(loop, seconds: 120, "\(total) echoed messages and both disconnects") {
            client.disconnected == 1 && serverDisconnects == 1
        }
        for _ in 0..<10 { loop.runOnceWithoutBlocking() }
        #expect(sent == total)
        #expect(delivered == total)
        #expect(deliveries.allSatisfy { $0 == 1 }, "messages delivered other than exactly once: \(deliveries.indices.filter { deliveries[$0] != 1 }.prefix(10))")
        #expect(outOfOrder == 0)
        #expect(malformed == 0 && serverMalformed == 0)
        #expect(maxInFlight <= window)
        #expect(sendFailures == 0)
        #expect(serverMessages == total)
        #expect(client.connected == 1 && client.eventsAfterDisconnect == 0)
        #expect(client.disconnectError == nil, "\(String(describing: client.disconnectError))")
        #expect(serverError == nil, "\(String(describing: serverError))")
        listener.close()
        expectNoLeaks(loop)
    }

    @Test("a segmenter fed one byte at a time still yields exactly the messages sent",
          arguments: StreamCase.kernelCore)
    func oneByteAtATime(_ streamCase: StreamCase) throws {
        let loop = try makeLoop()
        let listener = try Listener(address: streamCase.listenAddress(), protocol: streamCase.evplProtocol)
        let server = EventLog()
        loop.attach(to: listener) { connection in
            connection.segmenter = Segmenters.lengthPrefixed32()
            connection.handler = server.handle
        }
        let messages = [
            Self.framed(Array("hello".utf8)),
            Self.framed([]),
            Self.framed(patternBytes(from: 1000, count: 17)),
        ]
        let stream = messages.flatMap { $0 }
        let address = listener.address
        let clientFailed = AtomicCounter()
        let client = TestThread {
            let fd = rawConnect(to: address)
            guard fd >= 0 else {
                clientFailed.increment()
                return
            }
            for byte in stream {
                if !rawWriteAll(fd, [byte]) { clientFailed.increment() }
                usleep(500)
            }
            close(fd)
        }
        defer { client.join() }

        try spin(loop, seconds: 30, "three messages and the disconnect") { server.disconnected == 1 }
        client.join()
        for _ in 0..<10 { loop.runOnceWithoutBlocking() }
        #expect(clientFailed.value == 0)
        #expect(server.messages == messages)
        #expect(server.connected == 1 && server.disconnected == 1)
        #expect(server.disconnectError == nil, "\(String(describing: server.disconnectError))")
        listener.close()
        expectNoLeaks(loop)
    }

    @Test("delimited: CRLF lines written 1 to 7 bytes at a time arrive whole; a line past the maximum is a framing error",
          arguments: StreamCase.core.filter { $0.backend == .socket } + StreamCase.core.filter { $0.backend == .ioUring })
    func crlfLines(_ streamCase: StreamCase) throws {
        let loop = try makeLoop()
        let listener = try Listener(address: streamCase.listenAddress(), protocol: streamCase.evplProtocol)
        let server = EventLog()
        loop.attach(to: listener) { connection in
            connection.segmenter = Segmenters.delimited(by: Array("\r\n".utf8), maximumLength: 64)
            connection.handler = server.handle
        }
        let lines = ["GET / HTTP/1.1\r\n", "\r\n", "a\rb\nc\r\n", String(repeating: "x", count: 62) + "\r\n"].map { Array($0.utf8) }
        let tooLong = Array(String(repeating: "y", count: 64).utf8) + Array("\r\n".utf8)
        let stream = lines.flatMap { $0 } + tooLong
        let address = listener.address
        let clientFailed = AtomicCounter()
        let client = TestThread {
            let fd = rawConnect(to: address)
            guard fd >= 0 else {
                clientFailed.increment()
                return
            }
            var random = SeededRandom(seed: 0xC0DE)
            var position = 0
            while position < stream.count {
                let piece = min(stream.count - position, random.next(in: 1...7))
                // The server closes on the long line: MSG_NOSIGNAL, not SIGPIPE.
                _ = stream[position..<(position + piece)].withUnsafeBytes { send(fd, $0.baseAddress, piece, Int32(MSG_NOSIGNAL)) }
                position += piece
                usleep(200)
            }
            close(fd)
        }
        defer { client.join() }
        try spin(loop, seconds: 30, "the lines and the disconnect") { server.disconnected == 1 }
        client.join()
        #expect(clientFailed.value == 0)
        #expect(server.messages == lines)
        #expect(server.disconnectError?.code == .framing, "\(String(describing: server.disconnectError))")
        listener.close()
        expectNoLeaks(loop)
    }

    @Test("a segmenter failure closes the connection with a framing error; the peer is disconnected too",
          arguments: StreamCase.allCases)
    func segmenterFailure(_ streamCase: StreamCase) throws {
        let loop = try makeLoop()
        let listener = try Listener(address: streamCase.listenAddress(), protocol: streamCase.evplProtocol)
        let server = EventLog()
        loop.attach(to: listener) { connection in
            connection.segmenter = { _ in .failure("rejected by the test") }
            connection.handler = server.handle
        }
        let client = EventLog()
        _ = try loop.connect(to: listener.address, protocol: streamCase.evplProtocol) { connection, event in
            client.handle(connection, event)
            if case .connected = event { try? connection.send(Array("not a valid frame".utf8)) }
        }
        try spin(loop, seconds: 10, "both disconnects") { server.disconnected == 1 && client.disconnected == 1 }
        for _ in 0..<10 { loop.runOnceWithoutBlocking() }
        #expect(server.connected == 1 && server.disconnected == 1)
        #expect(server.messages.isEmpty)
        #expect(server.disconnectError?.code == .framing, "\(String(describing: server.disconnectError))")
        #expect(server.disconnectError?.context.contains("rejected by the test") == true)
        #expect(server.eventsAfterDisconnect == 0)
        #expect(client.connected == 1 && client.disconnected == 1 && client.eventsAfterDisconnect == 0)
        listener.close()
        expectNoLeaks(loop)
    }

    /// A header parsed in place and a payload kept without its header, from
    /// messages that straddle 4 KiB buffers at many offsets, the header too.
    @Test("big-endian 16-, 32- and 64-bit loads and a payload view past the header read the right bytes of messages that straddle pool buffers; the view's IOVecs hold exactly the payload")
    func headerAndPayloadViews() throws {
        let loop = try makeLoop(bufferSize: 4096)
        let listener = try Listener(address: SocketAddress(host: "127.0.0.1", port: 0), protocol: .tcp)
        defer { listener.close() }
        // Per message: a 2-byte tag, an 8-byte offset, then the payload.
        var checked = 0
        var wrong: [String] = []
        var kept: [[UInt8]] = []
        loop.attach(to: listener) { connection in
            connection.segmenter = Segmenters.lengthPrefixed32()
            connection.handler = { _, event in
                guard case .received(let message) = event else { return }
                let length = Int(message.loadBigEndianUInt32())
                let tag = message.loadBigEndianUInt16(at: 4)
                let offset = message.loadBigEndianUInt64(at: 6)
                let payload = message.dropFirst(14)
                if length != message.count - 4 || Int(tag) != checked || offset != 0x0102_0304_0506_0708 &+ UInt64(checked) {
                    wrong.append("message \(checked): length \(length), tag \(tag), offset \(offset)")
                }
                if payload.array != Self.payload(checked) || message.subrange(from: 4, length: 2).array != Array(message.array[4..<6]) {
                    wrong.append("message \(checked): payload view \(payload.array.prefix(8))")
                }
                let iovecs = payload.retainedIOVecs()
                kept.append(iovecs.flatMap { Array($0.bytes) })
                iovecs.forEach { $0.release() }
                checked += 1
            }
        }
        let client = try loop.connect(to: listener.address, protocol: .tcp) { connection, event in
            guard case .connected = event else { return }
            for index in 0..<Self.messages {
                let body = [UInt8(index >> 8), UInt8(index & 0xff)]
                    + (0..<8).map { UInt8(truncatingIfNeeded: (0x0102_0304_0506_0708 &+ UInt64(index)) >> (8 * (7 - UInt64($0)))) }
                    + Self.payload(index)
                try? connection.send(Self.framed(body))
            }
        }
        try spin(loop, "every message") { checked == Self.messages }
        #expect(wrong.isEmpty, "\(wrong.prefix(3))")
        #expect(kept == (0..<Self.messages).map { Self.payload($0) })
        client.close()
    }

    static let messages = 300

    /// A payload of 0 to 5,999 bytes whose length and values depend on the message.
    static func payload(_ index: Int) -> [UInt8] {
        (0..<(index * 613 % 6000)).map { UInt8(truncatingIfNeeded: index &* 31 &+ $0) }
    }
}
