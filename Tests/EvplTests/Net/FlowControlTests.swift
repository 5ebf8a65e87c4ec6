import Evpl
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// Opens a non-blocking raw client socket to `address`.
private func nonBlockingClient(_ address: SocketAddress) throws -> Int32 {
    let fd = rawConnect(to: address)
    try #require(fd >= 0)
    _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
    return fd
}

/// Writes pattern bytes from `offset` until the socket takes no more; returns the new offset.
private func writeUntilFull(_ fd: Int32, from offset: Int, limit: Int) -> Int {
    var offset = offset
    let chunk = UnsafeMutableRawBufferPointer.allocate(byteCount: 65536, alignment: 16)
    defer { chunk.deallocate() }
    while offset < limit {
        let length = min(chunk.count, limit - offset)
        fillPattern(UnsafeMutableRawBufferPointer(rebasing: chunk[0..<length]), from: offset)
        let written = write(fd, chunk.baseAddress, length)
        if written <= 0 { break }
        offset += written
    }
    return offset
}

@Suite("Flow control: pausing and resuming receives")
struct FlowControlTests {
    @Test("a handler that pauses in a callback gets no further message until it resumes", arguments: StreamCase.allCases)
    func pauseInCallback(_ streamCase: StreamCase) throws {
        let loop = try makeLoop()
        let listener = try Listener(address: streamCase.listenAddress(), protocol: streamCase.evplProtocol)
        var messages: [UInt32] = []
        var server: Connection?
        loop.attach(to: listener) { connection in
            server = connection
            connection.segmenter = Segmenters.fixedLength(4)
            connection.handler = { connection, event in
                guard case .received(let bytes) = event else { return }
                messages.append(bytes.loadBigEndianUInt32())
                connection.pauseReceiving()
            }
        }
        let count = 100
        let payload = (0..<UInt32(count)).flatMap { value in (0..<4).map { UInt8(truncatingIfNeeded: value >> (24 - 8 * UInt32($0))) } }
        _ = try loop.connect(to: listener.address, protocol: streamCase.evplProtocol) { connection, event in
            if case .connected = event { try? connection.send(payload) }
        }
        try spin(loop, "the first message") { messages.count >= 1 }
        try runLoop(loop, forMilliseconds: 50)
        #expect(messages == [0], "paused after the first message, got \(messages.count)")
        #expect(server?.isReceivingPaused == true)
        #expect(loop.statistics.receivePauses >= 1)

        // Each resume lets exactly one more message through (the handler pauses again).
        for expected in 1..<count {
            server?.resumeReceiving()
            try spin(loop, "message \(expected)") { messages.count > expected }
            #expect(messages.count == expected + 1)
        }
        #expect(messages == (0..<UInt32(count)).map { $0 })
        listener.close()
        expectNoLeaks(loop)
    }

    @Test("while paused, data waits in the kernel; after the resume every byte arrives in order", arguments: StreamCase.core)
    func dataWaitsInKernel(_ streamCase: StreamCase) throws {
        guard streamCase.kind == .tcp4 else { return }  // raw client speaks IPv4 and Unix paths
        let loop = try makeLoop()
        let listener = try Listener(address: streamCase.listenAddress(), protocol: streamCase.evplProtocol)
        var received = 0
        var mismatch: Int?
        var server: Connection?
        loop.attach(to: listener) { connection in
            server = connection
            connection.pauseReceiving()
            connection.handler = { _, event in
                guard case .received(let bytes) = event else { return }
                bytes.forEachSegment { piece in
                    if mismatch == nil, let index = patternMismatch(in: piece, at: received) { mismatch = received + index }
                    received += piece.count
                }
            }
        }
        let fd = try nonBlockingClient(listener.address)
        defer { close(fd) }
        try spin(loop, "the accept") { server != nil }
        // Keep writing while the loop runs: the kernel buffers fill and the writes stop.
        var written = 0
        for _ in 0..<50 {
            written = writeUntilFull(fd, from: written, limit: 256 << 20)
            try runLoop(loop, forMilliseconds: 2)
        }
        #expect(received == 0, "received \(received) bytes while paused")
        #expect(written < 64 << 20, "the peer could write \(written) bytes into a paused connection")
        #expect(loop.bufferPool.buffersInUse - loop.bufferPool.buffersLentToKernel <= 2)

        server?.resumeReceiving()
        shutdown(fd, Int32(SHUT_WR))
        try spin(loop, "every byte after the resume") { received == written || mismatch != nil }
        #expect(mismatch == nil)
        listener.close()
        expectNoLeaks(loop)
    }

    @Test("an end of stream that arrives while paused is reported after the bytes before it", arguments: StreamCase.allCases)
    func endOfStreamWhilePaused(_ streamCase: StreamCase) throws {
        let loop = try makeLoop()
        let listener = try Listener(address: streamCase.listenAddress(), protocol: streamCase.evplProtocol)
        let log = EventLog()
        var server: Connection?
        loop.attach(to: listener) { connection in
            server = connection
            connection.handler = { connection, event in
                log.handle(connection, event)
                if case .received = event { connection.pauseReceiving() }
            }
        }
        let client = EventLog()
        _ = try loop.connect(to: listener.address, protocol: streamCase.evplProtocol) { connection, event in
            client.handle(connection, event)
            if case .connected = event {
                try? connection.send(Array(repeating: 7, count: 1000))
                connection.finish()
            }
        }
        try spin(loop, "the first bytes") { !log.received.isEmpty }
        try runLoop(loop, forMilliseconds: 50)
        #expect(log.inputClosed == 0 && log.disconnected == 0, "the end of stream overtook paused data")
        while log.disconnected == 0 {
            server?.resumeReceiving()
            try runLoop(loop, forMilliseconds: 1)
        }
        try spin(loop, "the client's disconnect") { client.disconnected == 1 }
        #expect(log.received == Array(repeating: 7, count: 1000))
        #expect(log.inputClosed == 1 && log.disconnected == 1 && log.eventsAfterDisconnect == 0)
        #expect(log.disconnectError == nil && client.disconnectError == nil)
        listener.close()
        expectNoLeaks(loop)
    }

    @Test("with finishesWhenInputCloses off, a reply sent after the peer's half-close still arrives", arguments: StreamCase.allCases)
    func replyAfterHalfClose(_ streamCase: StreamCase) throws {
        let loop = try makeLoop()
        let listener = try Listener(address: streamCase.listenAddress(), protocol: streamCase.evplProtocol)
        var request: [UInt8] = []
        var inputClosedSeen = false
        var reply: EvplTimer?
        loop.attach(to: listener) { connection in
            connection.finishesWhenInputCloses = false
            connection.handler = { connection, event in
                switch event {
                case .received(let bytes):
                    request += bytes.array
                case .inputClosed:
                    inputClosedSeen = true
                    // The reply is ready only later, as from a block read or another service.
                    reply = try? connection.loop.addOneShotTimer(after: .microseconds(20_000)) { _ in
                        try? connection.send(request.reversed())
                        connection.finish()
                    }
                default:
                    break
                }
            }
        }
        let client = EventLog()
        _ = try loop.connect(to: listener.address, protocol: streamCase.evplProtocol) { connection, event in
            client.handle(connection, event)
            if case .connected = event {
                try? connection.send(Array(1...200))
                connection.finish()
            }
        }
        try spin(loop, "the reply and both disconnects") { client.disconnected == 1 }
        #expect(inputClosedSeen)
        #expect(client.received == Array((1...200).reversed()))
        #expect(client.inputClosed == 1 && client.disconnectError == nil)
        _ = reply
        listener.close()
        expectNoLeaks(loop)
    }

    @Test("a handler that closes the connection while it still reads the received view loses nothing and crashes nothing",
          arguments: StreamCase.core)
    func closeInsideReceived(_ streamCase: StreamCase) throws {
        let loop = try makeLoop(bufferSize: 4096)
        let listener = try Listener(address: streamCase.listenAddress(), protocol: streamCase.evplProtocol)
        var seen: [UInt8] = []
        var events = 0
        loop.attach(to: listener) { connection in
            connection.handler = { connection, event in
                events += 1
                guard case .received(let bytes) = event else { return }
                connection.close()
                seen = bytes.array
                bytes.forEachSegment { _ in }
                _ = bytes.retainedIOVecs().map { $0.release() }
            }
        }
        let payload = patternBytes(from: 0, count: 10_000)
        _ = try loop.connect(to: listener.address, protocol: streamCase.evplProtocol) { connection, event in
            if case .connected = event { try? connection.send(payload) }
        }
        try spin(loop, "the server's close") { !seen.isEmpty }
        try runLoop(loop, forMilliseconds: 20)
        #expect(seen == Array(payload.prefix(seen.count)))
        listener.close()
        expectNoLeaks(loop)
    }
}
