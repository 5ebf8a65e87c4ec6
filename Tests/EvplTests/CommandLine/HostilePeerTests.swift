import Evpl
import EvplTLS
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// Attacks that once stopped or starved a server: each one is replayed here,
/// bounded in count and time, on every backend.
@Suite("Hostile peers cannot stall a loop")
struct HostilePeerTests {
    /// Opens `count` raw client sockets to `address`, each sending `bytes`.
    static func flood(_ address: SocketAddress, count: Int, sending bytes: [UInt8]) -> [Int32] {
        var clients: [Int32] = []
        for _ in 0..<count {
            let fd = rawConnect(to: address)
            guard fd >= 0 else { continue }
            if !bytes.isEmpty { _ = rawWriteAll(fd, bytes) }
            clients.append(fd)
        }
        return clients
    }

    /// A length-prefixed frame: the 4-byte big-endian length, then the payload.
    static func frame(_ payload: [UInt8]) -> [UInt8] {
        let length = UInt32(payload.count)
        return [UInt8(length >> 24), UInt8(truncatingIfNeeded: length >> 16), UInt8(truncatingIfNeeded: length >> 8), UInt8(truncatingIfNeeded: length)] + payload
    }

    @Test("clients that hold part of a message until every pool buffer is taken, then leave, do not stall the loop: the next client is served at once",
          arguments: StreamCase.backends)
    func partialMessageFloodAtTheCeiling(_ backend: EvplProtocol.Backend) throws {
        let ceiling = 24
        let loop = try makeLoop(bufferSize: 4096) {
            $0.poolMaxBytes = ceiling * 4096
            $0.buffersPerSlab = 8
            $0.ioUringBufferRingEntries = 16
        }
        let listener = try Listener(address: SocketAddress(host: "127.0.0.1", port: 0), protocol: EvplProtocol(.tcp, backend: backend))
        var open = 0
        var ended = 0
        loop.attach(to: listener) { connection in
            connection.segmenter = Segmenters.lengthPrefixed32()
            open += 1
            connection.handler = { connection, event in
                switch event {
                case .received(let message):
                    try? connection.send(taking: message.retainedIOVecs())
                case .disconnected:
                    ended += 1
                default:
                    break
                }
            }
        }
        // Each holds three quarters of a buffer's worth of a message: one
        // buffer apiece (where io_uring consumes buffers incrementally,
        // smaller pieces of many connections would share buffers), more
        // clients than the pool has buffers.
        let partial = Array(Self.frame([UInt8](repeating: 7, count: 4_000)).prefix(3_000))
        let clients = Self.flood(listener.address, count: ceiling + 16, sending: partial)
        #expect(clients.count == ceiling + 16)
        
        // Once the pool is full and connections wait for memory, the loop refuses the rest.
        let refused = { Int(loop.statistics.admissionRefusals) }
        try spin(loop, seconds: 10, "the pool to fill") { open + refused() == clients.count && loop.bufferPool.buffersInUse >= ceiling }
        try runLoop(loop, forMilliseconds: 100)
        for fd in clients { close(fd) }
        let closedAt = MonotonicClock.nanoseconds()
        try spin(loop, seconds: 10, "every flooding connection to end (\(ended) of \(open))") { ended == open }
        let endedAfter = Double(MonotonicClock.nanoseconds() - closedAt) / 1e9
        #expect(endedAfter < 1, "the flood's connections took \(endedAfter) s to end")

        let payload = patternBytes(from: 0, count: 100)
        let result = Locked<[UInt8]?>(nil)
        let address = listener.address
        let client = TestThread {
            let fd = rawConnect(to: address)
            defer { close(fd) }
            setReceiveTimeout(fd, seconds: 5)
            guard fd >= 0, rawWriteAll(fd, Self.frame(payload)) else { return }
            let echoed = readExactly(fd, 104)
            result.withLock { $0 = echoed }
        }
        let startedAt = MonotonicClock.nanoseconds()
        try spin(loop, seconds: 10, "the legitimate client") { result.withLock { $0 != nil } }
        client.join()
        let servedAfter = Double(MonotonicClock.nanoseconds() - startedAt) / 1e9
        #expect(result.withLock { $0 } == Self.frame(payload))
        #expect(servedAfter < 1, "the next client was served after \(servedAfter) s")
        listener.close()
        expectNoLeaks(loop)
    }

    @Test("TLS clients that send half a ClientHello until every pool buffer is taken, then leave, do not stall the loop: the next TLS client is served at once",
          arguments: StreamCase.backends)
    func halfHelloFloodAtTheCeiling(_ backend: EvplProtocol.Backend) throws {
        let fixtures = try TLSFixtures.get()
        let ceiling = 24
        let loop = try makeLoop(bufferSize: 4096) {
            $0.poolMaxBytes = ceiling * 4096
            $0.buffersPerSlab = 8
            $0.ioUringBufferRingEntries = 16
        }
        var ended = 0
        let listener = try Listener(address: SocketAddress(host: "127.0.0.1", port: 0),
                                    protocol: EvplProtocol(.tcp, backend: backend, tls: try fixtures.serverContext()))
        loop.attach(to: listener) { connection in
            let log = TLSEndpointLog()
            connection.handler = { connection, event in
                log.record(connection, event, echo: true)
                if case .disconnected = event { ended += 1 }
            }
        }
        // A handshake record header that promises 512 bytes, and the first 30 of them.
        let halfHello: [UInt8] = [0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03] + [UInt8](repeating: 0x42, count: 19)
        let clients = Self.flood(listener.address, count: ceiling + 16, sending: halfHello)
        #expect(clients.count == ceiling + 16)
        try runLoop(loop, forMilliseconds: 300)
        for fd in clients { close(fd) }
        try spin(loop, seconds: 10, "every flooding connection to end (\(ended) of \(clients.count))") {
            ended + Int(loop.statistics.admissionRefusals) == clients.count
        }

        let start = MonotonicClock.nanoseconds()
        let client = TLSEndpointLog()
        let connection = try loop.connect(to: listener.address, protocol: EvplProtocol(.tcp, backend: backend, tls: try fixtures.clientContext())) { connection, event in
            client.record(connection, event, echo: false)
            if case .connected = event { try? connection.send(Array("served".utf8)) }
        }
        try spin(loop, seconds: 10, "the next TLS client") { client.received.count == 6 || client.ended != nil }
        let servedAfter = Double(MonotonicClock.nanoseconds() - start) / 1e9
        #expect(client.received == Array("served".utf8), "\(String(describing: client.ended))")
        #expect(servedAfter < 1, "the next TLS client was served after \(servedAfter) s")
        connection.close()
        listener.close()
        expectNoLeaks(loop)
    }

    @Test("the CLI servers close a client that never finishes its first request at --handshake-timeout, and keep serving",
          arguments: ServerCase.all.filter { $0.transport == "tcp" })
    func commandLineHandshakeTimeout(_ serverCase: ServerCase) throws {
        let scratch = try ScratchFile.sized(1 << 20)
        let server = try serverCase.start(file: scratch.path, extra: ["--handshake-timeout", "0.5"])
        let start = MonotonicClock.nanoseconds()
        let clients = Self.flood(server.address, count: 4, sending: serverCase.partialFirstRequest)
        defer { clients.forEach { close($0) } }
        #expect(clients.count == 4)
        for client in clients {
            setReceiveTimeout(client, seconds: 5)
            var byte: UInt8 = 0
            let result = read(client, &byte, 1)
            #expect(result == 0 || (result < 0 && errno == ECONNRESET), "the server did not close the client (read \(result), errno \(errno))")
        }
        let elapsed = Double(MonotonicClock.nanoseconds() - start) / 1e9
        #expect(elapsed >= 0.4 && elapsed < 3, "closed after \(elapsed) s")
        #expect(serverCase.serves(server.address))
        #expect(server.terminate() == 0)
    }
}
