import Evpl
import Testing

@Suite("Datagrams")
struct DatagramTests {
    /// The largest UDP payload for the host's IP version.
    static func maxPayload(_ host: String) -> Int { host.contains(":") ? 65_527 : 65_507 }

    /// The demo crashed (1 run in 4, release build) when a client's io_uring
    /// endpoint, armed to receive, was freed after its loop: its receive
    /// buffers went back to a pool that no longer existed.
    @Test("an io_uring endpoint that outlives its loop gives its receive buffers back while the pool exists",
          .enabled(if: Probe.unavailableReason(for: .ioUring) == nil))
    func endpointOutlivesLoop() throws {
        var endpoint: DatagramEndpoint?
        do {
            let loop = try makeLoop()
            endpoint = try loop.bindDatagram(SocketAddress(host: "127.0.0.1", port: 0), protocol: EvplProtocol(.udp, backend: .ioUring)) { _, _, _ in }
            loop.runOnceWithoutBlocking()
            #expect(loop.bufferPool.buffersLentToKernel > 0)
        }
        #expect(endpoint != nil)
        endpoint = nil
    }

    @Test("20 datagrams of various sizes arrive whole, in order, from the sender's address",
          arguments: ["127.0.0.1", "::1"], StreamCase.backends)
    func variousSizes(host: String, backend: EvplProtocol.Backend) throws {
        let udp = EvplProtocol(.udp, backend: backend)
        let loop = try makeLoop()
        var received: [[UInt8]] = []
        var senders: [SocketAddress] = []
        let receiver = try loop.bindDatagram(SocketAddress(host: host, port: 0), protocol: udp) { _, bytes, sender in
            received.append(bytes.array)
            senders.append(sender)
        }
        let sender = try loop.bindDatagram(SocketAddress(host: host, port: 0), protocol: udp) { _, _, _ in }
        let base = [1, 7, 100, 1400, 8000, 60_000, 0, 2, 512, 1472, 4096, 9000, 32_768, 65_000, 3, 16_384, 1500, 40_000, 250, Self.maxPayload(host)]
        #expect(base.count == 20)
        let datagrams = base.enumerated().map { index, size in patternBytes(from: index * 65_536, count: size) }
        // One at a time, so a full socket receive buffer can never drop one.
        for (index, datagram) in datagrams.enumerated() {
            try sender.send(to: receiver.localAddress, datagram)
            try spin(loop, seconds: 10, "datagram \(index) of \(datagram.count) bytes") { received.count > index }
        }
        for _ in 0..<10 { loop.runOnceWithoutBlocking() }
        #expect(received.count == datagrams.count)
        #expect(received.map(\.count) == datagrams.map(\.count))
        #expect(received == datagrams)
        #expect(senders.allSatisfy { $0 == sender.localAddress }, "senders \(Set(senders)), expected \(sender.localAddress)")
        #expect(sender.localAddress.port != 0)
        sender.close()
        receiver.close()
        expectNoLeaks(loop)
    }

    @Test("a burst of 20 datagrams queued in one iteration arrives complete and in order",
          arguments: ["127.0.0.1", "::1"], StreamCase.backends)
    func burst(host: String, backend: EvplProtocol.Backend) throws {
        let udp = EvplProtocol(.udp, backend: backend)
        let loop = try makeLoop()
        var received: [[UInt8]] = []
        var senders: [SocketAddress] = []
        let receiver = try loop.bindDatagram(SocketAddress(host: host, port: 0), protocol: udp) { _, bytes, sender in
            received.append(bytes.array)
            senders.append(sender)
        }
        let sender = try loop.bindDatagram(SocketAddress(host: host, port: 0), protocol: udp) { _, _, _ in }
        let datagrams = (0..<20).map { index in patternBytes(from: index * 4096, count: 1 + (index * 97) % 1400) }
        for datagram in datagrams { try sender.send(to: receiver.localAddress, datagram) }
        #expect(sender.queuedDatagrams == 20)
        try spin(loop, seconds: 10, "20 datagrams") { received.count >= 20 }
        for _ in 0..<10 { loop.runOnceWithoutBlocking() }
        #expect(sender.queuedDatagrams == 0)
        #expect(received == datagrams)
        #expect(senders.allSatisfy { $0 == sender.localAddress })
        sender.close()
        receiver.close()
        expectNoLeaks(loop)
    }

    @Test("a datagram larger than a pool buffer is rejected with invalidArgument and nothing is queued",
          arguments: StreamCase.backends)
    func oversized(backend: EvplProtocol.Backend) throws {
        let udp = EvplProtocol(.udp, backend: backend)
        let loop = try makeLoop()
        let receiver = try loop.bindDatagram(SocketAddress(host: "127.0.0.1", port: 0), protocol: udp) { _, _, _ in }
        let sender = try loop.bindDatagram(SocketAddress(host: "127.0.0.1", port: 0), protocol: udp) { _, _, _ in }
        let bufferSize = loop.bufferPool.bufferSize
        #expect {
            try sender.send(to: receiver.localAddress, [UInt8](repeating: 7, count: bufferSize + 1))
        } throws: { error in
            (error as? EvplError)?.code == .invalidArgument
        }
        #expect(sender.queuedDatagrams == 0)
        #expect(loop.bufferPool.buffersInUse - loop.bufferPool.buffersLentToKernel == 0)
        sender.close()
        receiver.close()
        expectNoLeaks(loop)
    }

    /// A send queued between iterations leaves the loop with work to do, so
    /// the next `runOnce` must not sleep before flushing it.
    @Test("a datagram queued between iterations is sent by the next runOnce without sleeping",
          arguments: StreamCase.backends)
    func sendBetweenIterations(backend: EvplProtocol.Backend) throws {
        let udp = EvplProtocol(.udp, backend: backend)
        let loop = try makeLoop { $0.spinNanoseconds = 0 }
        var received = 0
        let receiver = try loop.bindDatagram(SocketAddress(host: "127.0.0.1", port: 0), protocol: udp) { _, _, _ in received += 1 }
        let sender = try loop.bindDatagram(SocketAddress(host: "127.0.0.1", port: 0), protocol: udp) { _, _, _ in }
        // Let the registration events pass until the loop decides to sleep for good.
        for _ in 0..<5 where loop.isPolling { loop.runOnce() }
        #expect(!loop.isPolling)
        try sender.send(to: receiver.localAddress, [1, 2, 3])
        expectRunOnceDoesNotSleep(loop, "a datagram queued")
        try spin(loop, seconds: 5, "the datagram") { received >= 1 }
        sender.close()
        receiver.close()
        expectNoLeaks(loop)
    }

    @Test("a datagram arrives whole even when the user still holds the previous one's buffer",
          arguments: StreamCase.backends)
    func receiveAfterRetainedDatagram(backend: EvplProtocol.Backend) throws {
        let udp = EvplProtocol(.udp, backend: backend)
        let loop = try makeLoop(bufferSize: 8192)
        var received: [[UInt8]] = []
        var held: [IOVec] = []
        let receiver = try loop.bindDatagram(SocketAddress(host: "127.0.0.1", port: 0), protocol: udp) { _, bytes, _ in
            received.append(bytes.array)
            held += bytes.retainedIOVecs()
        }
        let sender = try loop.bindDatagram(SocketAddress(host: "127.0.0.1", port: 0), protocol: udp) { _, _, _ in }
        let datagrams = [patternBytes(from: 0, count: 7000), patternBytes(from: 7000, count: 8192), patternBytes(from: 20_000, count: 3000)]
        for (index, datagram) in datagrams.enumerated() {
            try sender.send(to: receiver.localAddress, datagram)
            try spin(loop, seconds: 10, "datagram \(index)") { received.count > index }
        }
        #expect(received == datagrams)
        #expect(receiver.truncatedDatagrams == 0)
        for iovec in held { iovec.release() }
        sender.close()
        receiver.close()
        expectNoLeaks(loop)
    }

    /// The socket backend reads a datagram into one pool buffer: a larger
    /// one is counted and dropped. The io_uring backend receives into as many
    /// buffers as the largest datagram needs, so there it arrives whole.
    @Test("a datagram larger than a receive buffer: dropped and counted on sockets, whole on io_uring, never cut",
          arguments: StreamCase.backends)
    func largerThanReceiveBuffer(backend: EvplProtocol.Backend) throws {
        let udp = EvplProtocol(.udp, backend: backend)
        let sendingLoop = try makeLoop()
        let receivingLoop = try makeLoop(bufferSize: 4096)
        var received: [[UInt8]] = []
        let receiver = try receivingLoop.bindDatagram(SocketAddress(host: "127.0.0.1", port: 0), protocol: udp) { _, bytes, _ in
            received.append(bytes.array)
        }
        let sender = try sendingLoop.bindDatagram(SocketAddress(host: "127.0.0.1", port: 0), protocol: udp) { _, _, _ in }
        let large = patternBytes(from: 0, count: 5000)
        let small = patternBytes(from: 0, count: 100)
        try sender.send(to: receiver.localAddress, large)
        try sender.send(to: receiver.localAddress, small)
        try spin(sendingLoop, seconds: 10, "both datagrams sent") { sender.queuedDatagrams == 0 }
        try spin(receivingLoop, seconds: 10, "the small datagram") { received.last == small }
        if backend == .ioUring {
            #expect(received == [large, small])
            #expect(receiver.truncatedDatagrams == 0)
            sender.close()
            receiver.close()
            expectNoLeaks(sendingLoop)
            expectNoLeaks(receivingLoop)
            return
        }
        #expect(received == [small])
        #expect(receiver.truncatedDatagrams == 1)
        sender.close()
        receiver.close()
        expectNoLeaks(sendingLoop)
        expectNoLeaks(receivingLoop)
    }
}
