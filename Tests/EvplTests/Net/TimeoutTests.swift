import Evpl
import EvplTLS
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// Handshake and idle timeouts: a peer that says nothing, says half a
/// request, or goes silent is closed at its deadline with `.timedOut`, and
/// one that talks is not.
@Suite("Connection timeouts")
struct TimeoutTests {
    /// A listener on `backend` whose accepted connections log their events
    /// (in accept order) and echo their messages (4-byte length prefix).
    final class Server {
        let loop: EventLoop
        let listener: Listener
        var logs: [EventLog] = []

        init(_ backend: EvplProtocol.Backend, timeouts: ConnectionTimeouts, tls: TLSContext? = nil,
             configure: @escaping (Connection) -> Void = { _ in }) throws {
            loop = try makeLoop()
            listener = try Listener(address: SocketAddress(host: "127.0.0.1", port: 0),
                                    protocol: EvplProtocol(.tcp, backend: backend, tls: tls), timeouts: timeouts)
            loop.attach(to: listener) { [unowned self] connection in
                let log = EventLog()
                logs.append(log)
                connection.segmenter = Segmenters.lengthPrefixed32()
                connection.handler = { connection, event in
                    log.handle(connection, event)
                    if case .received(let message) = event { try? connection.send(taking: message.retainedIOVecs()) }
                }
                configure(connection)
            }
        }

        var ended: Int { logs.filter { $0.disconnected > 0 }.count }

        deinit { listener.close() }
    }

    static func seconds(since start: UInt64) -> Double { Double(MonotonicClock.nanoseconds() - start) / 1e9 }

    @Test("a client that sends nothing, or part of its first message, is closed at the handshake deadline with timedOut",
          arguments: StreamCase.backends)
    func handshakeDeadline(_ backend: EvplProtocol.Backend) throws {
        let server = try Server(backend, timeouts: ConnectionTimeouts(handshake: .milliseconds(300)))
        let start = MonotonicClock.nanoseconds()
        let silent = HostilePeerTests.flood(server.listener.address, count: 3, sending: [])
        let partial = HostilePeerTests.flood(server.listener.address, count: 3, sending: [0, 0, 0, 10, 1, 2])
        defer { (silent + partial).forEach { close($0) } }
        try spin(server.loop, seconds: 5, "six connections to time out") { server.ended == 6 }
        let elapsed = Self.seconds(since: start)
        #expect(elapsed >= 0.3 && elapsed < 1.5, "timed out after \(elapsed) s")
        for log in server.logs {
            #expect(log.disconnectError?.code == .timedOut)
            #expect(log.disconnectError?.operation == "handshake")
        }
        #expect(server.loop.statistics.handshakeTimeouts == 6)
        // The clients see the end of the stream.
        for fd in silent + partial {
            setReceiveTimeout(fd, seconds: 2)
            var byte: UInt8 = 0
            #expect(read(fd, &byte, 1) <= 0)
        }
        expectNoLeaks(server.loop)
    }

    @Test("the first whole message ends the handshake: a client that completes it is not closed at the handshake deadline",
          arguments: StreamCase.backends)
    func handshakeEndsWithFirstMessage(_ backend: EvplProtocol.Backend) throws {
        let server = try Server(backend, timeouts: ConnectionTimeouts(handshake: .milliseconds(200)))
        let clients = HostilePeerTests.flood(server.listener.address, count: 1, sending: HostilePeerTests.frame([1, 2, 3]))
        defer { clients.forEach { close($0) } }
        try spin(server.loop, seconds: 5, "the message") { server.logs.first?.messages.count == 1 }
        try runLoop(server.loop, forMilliseconds: 600)
        #expect(server.ended == 0)
        #expect(server.loop.statistics.handshakeTimeouts == 0)
        expectNoLeaks(server.loop)
    }

    @Test("with handshakeEndsWithFirstMessage off, only endHandshake() ends it", arguments: StreamCase.backends)
    func explicitHandshakeEnd(_ backend: EvplProtocol.Backend) throws {
        let timeouts = ConnectionTimeouts(handshake: .milliseconds(300), handshakeEndsWithFirstMessage: false)
        let server = try Server(backend, timeouts: timeouts) { connection in
            let counter = Counter()
            let log = connection.handler
            connection.handler = { connection, event in
                log(connection, event)
                // The second message completes this protocol's handshake.
                if case .received = event, counter.next() == 2 { connection.endHandshake() }
            }
        }
        let one = HostilePeerTests.flood(server.listener.address, count: 1, sending: HostilePeerTests.frame([1]))
        let two = HostilePeerTests.flood(server.listener.address, count: 1, sending: HostilePeerTests.frame([1]) + HostilePeerTests.frame([2]))
        defer { (one + two).forEach { close($0) } }
        try spin(server.loop, seconds: 5, "the one-message client to time out") { server.ended == 1 }
        try runLoop(server.loop, forMilliseconds: 300)
        #expect(server.ended == 1)
        let timedOut = server.logs.filter { $0.disconnected > 0 }
        #expect(timedOut.first?.messages.count == 1)
        #expect(timedOut.first?.disconnectError?.operation == "handshake")
        expectNoLeaks(server.loop)
    }

    @Test("a connection silent for the idle limit is closed, one that keeps talking stays", arguments: StreamCase.backends)
    func idleDeadline(_ backend: EvplProtocol.Backend) throws {
        let server = try Server(backend, timeouts: ConnectionTimeouts(idle: .milliseconds(400)))
        let quiet = HostilePeerTests.flood(server.listener.address, count: 1, sending: HostilePeerTests.frame([1]))
        let talker = HostilePeerTests.flood(server.listener.address, count: 1, sending: HostilePeerTests.frame([1]))
        defer { (quiet + talker).forEach { close($0) } }
        let start = MonotonicClock.nanoseconds()
        var sent = 1
        let ticker = try server.loop.addTimer(every: .milliseconds(100)) { _ in
            _ = rawWriteAll(talker[0], HostilePeerTests.frame([UInt8(truncatingIfNeeded: sent)]))
            sent += 1
        }
        try spin(server.loop, seconds: 5, "the quiet client to time out") { server.ended == 1 }
        let elapsed = Self.seconds(since: start)
        #expect(elapsed >= 0.3 && elapsed < 1.2, "idle timeout after \(elapsed) s")
        try runLoop(server.loop, forMilliseconds: 800)
        ticker.cancel()
        #expect(server.ended == 1, "the talking client was closed too")
        let closed = try #require(server.logs.first { $0.disconnected > 0 })
        #expect(closed.disconnectError?.code == .timedOut)
        #expect(closed.disconnectError?.operation == "idle")
        #expect(server.loop.statistics.idleTimeouts == 1)
        #expect(server.logs.contains { $0.disconnected == 0 && $0.messages.count >= 8 })
        expectNoLeaks(server.loop)
    }

    @Test("a message deadline closes a connection whose message is late, even while it keeps sending; a cleared one closes nothing",
          arguments: StreamCase.backends)
    func messageDeadline(_ backend: EvplProtocol.Backend) throws {
        // Each connection gets a 300 ms deadline at its first message, which
        // the second connection's second message clears.
        var messagesSeen: [ObjectIdentifier: Int] = [:]
        let server = try Server(backend, timeouts: ConnectionTimeouts(idle: .seconds(10))) { connection in
            let echo = connection.handler
            connection.handler = { connection, event in
                if case .received = event {
                    let seen = messagesSeen[ObjectIdentifier(connection), default: 0] + 1
                    messagesSeen[ObjectIdentifier(connection)] = seen
                    connection.setMessageDeadline(after: seen == 1 ? .milliseconds(300) : nil)
                }
                echo(connection, event)
            }
        }
        let late = HostilePeerTests.flood(server.listener.address, count: 1, sending: HostilePeerTests.frame([1]))
        let cleared = HostilePeerTests.flood(server.listener.address, count: 1, sending: HostilePeerTests.frame([1]) + HostilePeerTests.frame([2]))
        defer { (late + cleared).forEach { close($0) } }
        let start = MonotonicClock.nanoseconds()
        // The late client keeps the connection active with half a frame a byte at a time: only the deadline catches it.
        var trickled = 0
        let ticker = try server.loop.addTimer(every: .milliseconds(50)) { _ in
            if trickled < 3 { _ = rawWriteAll(late[0], [0]) }
            trickled += 1
        }
        try spin(server.loop, seconds: 5, "the late message's deadline") { server.ended == 1 }
        let elapsed = Self.seconds(since: start)
        #expect(elapsed >= 0.25 && elapsed < 1.2, "message deadline after \(elapsed) s")
        try runLoop(server.loop, forMilliseconds: 600)
        ticker.cancel()
        #expect(server.ended == 1, "the connection whose deadline was cleared closed too")
        let closed = try #require(server.logs.first { $0.disconnected > 0 })
        #expect(closed.disconnectError?.code == .timedOut)
        #expect(closed.disconnectError?.operation == "message")
        #expect(server.loop.statistics.messageTimeouts == 1)
        expectNoLeaks(server.loop)
    }

    @Test("a loop destroyed while its connections have deadlines lets them go without reaching back into itself", arguments: StreamCase.backends)
    func loopEndsWithDeadlines(_ backend: EvplProtocol.Backend) throws {
        var client: [Int32] = []
        do {
            let server = try Server(backend, timeouts: ConnectionTimeouts(idle: .seconds(30))) { connection in
                connection.setMessageDeadline(after: .seconds(30))
            }
            client = HostilePeerTests.flood(server.listener.address, count: 2, sending: HostilePeerTests.frame([1]))
            try spin(server.loop, seconds: 5, "two connections with deadlines") { server.logs.count == 2 && server.logs.allSatisfy { $0.messages.count == 1 } }
            // The server (and its loop) goes here, its connections still open and in the deadline wheel.
        }
        for fd in client {
            // The echo, then the end of the stream: not the 5 s timeout.
            var buffer = [UInt8](repeating: 0, count: 64)
            setReceiveTimeout(fd, seconds: 5)
            var result = 0
            repeat {
                result = read(fd, &buffer, buffer.count)
            } while result > 0 || (result < 0 && errno == EINTR)
            #expect(result == 0 || errno != EAGAIN, "the connection outlived its loop")
            close(fd)
        }
    }

    @Test("a TLS client that sends no ClientHello, or half of one, is closed at the handshake deadline", arguments: StreamCase.backends)
    func tlsHandshakeDeadline(_ backend: EvplProtocol.Backend) throws {
        let fixtures = try TLSFixtures.get()
        let server = try Server(backend, timeouts: ConnectionTimeouts(handshake: .milliseconds(300)), tls: try fixtures.serverContext())
        // The first bytes of a TLS record header and a ClientHello.
        let halfHello: [UInt8] = [0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03]
        let clients = HostilePeerTests.flood(server.listener.address, count: 2, sending: []) + HostilePeerTests.flood(server.listener.address, count: 2, sending: halfHello)
        defer { clients.forEach { close($0) } }
        try spin(server.loop, seconds: 5, "the TLS clients to time out") { server.ended == 4 }
        #expect(server.logs.allSatisfy { $0.disconnectError?.code == .timedOut && $0.connected == 0 })
        expectNoLeaks(server.loop)
    }

    @Test("hundreds of deadlines on one wheel: each connection closes at its own, none early", arguments: StreamCase.backends)
    func manyDeadlines(_ backend: EvplProtocol.Backend) throws {
        let server = try Server(backend, timeouts: .none)
        var order = 0
        var early: [String] = []
        var late: [String] = []
        server.loop.attach(to: server.listener) { connection in
            let log = EventLog()
            server.logs.append(log)
            // Spread over 0.2 to 1.4 s: many slots, several connections each.
            let limit = 200 + 100 * (order % 13)
            order += 1
            let acceptedAt = MonotonicClock.nanoseconds()
            connection.timeouts = ConnectionTimeouts(idle: .milliseconds(limit))
            connection.handler = { connection, event in
                log.handle(connection, event)
                guard case .disconnected = event else { return }
                let lived = Int((MonotonicClock.nanoseconds() - acceptedAt) / 1_000_000)
                // One wheel tick (100 ms) of resolution, and a loaded machine.
                if lived < limit - 100 { early.append("\(limit) ms limit, closed after \(lived)") }
                if lived > limit + 1_000 { late.append("\(limit) ms limit, closed after \(lived)") }
            }
        }
        let count = 600
        var clients: [Int32] = []
        for _ in 0..<count {
            clients.append(rawConnect(to: server.listener.address))
            server.loop.runOnceWithoutBlocking()
        }
        defer { clients.forEach { close($0) } }
        try spin(server.loop, seconds: 15, "every connection to time out") { server.ended == count }
        #expect(server.loop.statistics.idleTimeouts == UInt64(count))
        #expect(early.isEmpty, "\(early.prefix(5))")
        #expect(late.isEmpty, "\(late.prefix(5))")
        expectNoLeaks(server.loop)
    }
}

/// A counter kept as a connection's context.
final class Counter {
    var value = 0
    func next() -> Int {
        value += 1
        return value
    }
}
