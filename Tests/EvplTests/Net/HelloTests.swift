import Evpl
import Testing

@Suite("Connection lifecycle")
struct ConnectionLifecycleTests {
    @Test("hello round-trip: 13 bytes each way, then one disconnect each side", arguments: StreamCase.allCases)
    func helloRoundTrip(_ streamCase: StreamCase) throws {
        let loop = try makeLoop()
        let listener = try Listener(address: streamCase.listenAddress(), protocol: streamCase.evplProtocol)
        let greeting = Array("Hello, world!".utf8)
        #expect(greeting.count == 13)
        let server = EventLog()
        loop.attach(to: listener) { connection in
            connection.handler = { connection, event in
                server.handle(connection, event)
                if case .received = event, server.received.count == 13 {
                    try? connection.send(server.received)
                    connection.finish()
                }
            }
        }
        let client = EventLog()
        let connection = try loop.connect(to: listener.address, protocol: streamCase.evplProtocol) { connection, event in
            client.handle(connection, event)
            if case .connected = event { try? connection.send(greeting) }
        }
        try spin(loop, "both disconnects") { server.disconnected == 1 && client.disconnected == 1 }
        for _ in 0..<10 { loop.runOnceWithoutBlocking() }
        #expect(server.received == greeting)
        #expect(client.received == greeting)
        #expect(server.connected == 1 && client.connected == 1)
        #expect(server.disconnected == 1 && client.disconnected == 1)
        #expect(server.eventsAfterDisconnect == 0 && client.eventsAfterDisconnect == 0)
        #expect(!server.dataBeforeConnected && !client.dataBeforeConnected)
        #expect(client.disconnectError == nil, "\(String(describing: client.disconnectError))")
        #expect(connection.isClosed)
        listener.close()
        expectNoLeaks(loop)
    }

    @Test("connect to a closed port: one disconnected, never connected", arguments: StreamCase.allCases)
    func connectRefused(_ streamCase: StreamCase) throws {
        let loop = try makeLoop()
        // Bind and close a listener so the address is known to be free.
        let address: SocketAddress
        do {
            let probe = try Listener(address: streamCase.listenAddress(), protocol: streamCase.evplProtocol)
            address = probe.address
            probe.close()
        }
        let client = EventLog()
        _ = try loop.connect(to: address, protocol: streamCase.evplProtocol) { client.handle($0, $1) }
        try spin(loop, "disconnect") { client.disconnected == 1 }
        for _ in 0..<10 { loop.runOnceWithoutBlocking() }
        #expect(client.connected == 0)
        #expect(client.disconnected == 1)
        #expect(client.disconnectError?.code == .connectionRefused)
        expectNoLeaks(loop)
    }

    @Test("listening twice on one address fails; the first listener still accepts", arguments: StreamCase.allCases)
    func listenTwice(_ streamCase: StreamCase) throws {
        let loop = try makeLoop()
        let first = try Listener(address: streamCase.listenAddress(), protocol: streamCase.evplProtocol)
        #expect {
            _ = try Listener(address: first.address, protocol: streamCase.evplProtocol)
        } throws: { error in
            (error as? EvplError)?.code == .addressInUse
        }
        let server = EventLog()
        loop.attach(to: first) { $0.handler = server.handle }
        let client = EventLog()
        let connection = try loop.connect(to: first.address, protocol: streamCase.evplProtocol) { client.handle($0, $1) }
        try spin(loop, "connected") { server.connected == 1 && client.connected == 1 }
        connection.close()
        connection.close()
        try spin(loop, "disconnects") { server.disconnected == 1 && client.disconnected == 1 }
        first.close()
        expectNoLeaks(loop)
    }

    @Test("mismatched protocol and address is an error, not a crash")
    func protocolAddressMismatch() throws {
        let loop = try makeLoop()
        #expect {
            _ = try loop.connect(to: SocketAddress(unixPath: "/tmp/x.sock"), protocol: .tcp) { _, _ in }
        } throws: { ($0 as? EvplError)?.code == .invalidAddress }
        #expect {
            _ = try loop.connect(to: SocketAddress(host: "127.0.0.1", port: 1), protocol: .unix) { _, _ in }
        } throws: { ($0 as? EvplError)?.code == .invalidAddress }
        #expect {
            _ = try loop.connect(to: SocketAddress(host: "127.0.0.1", port: 1), protocol: .udp) { _, _ in }
        } throws: { ($0 as? EvplError)?.code == .invalidArgument }
        expectNoLeaks(loop)
    }
}
