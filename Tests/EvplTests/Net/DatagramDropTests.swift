import Evpl
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// Datagrams may be lost (that is UDP), but never silently: every loss has
/// a counter, and an endpoint starved of pool buffers receives again once
/// buffers come back.
@Suite("Datagram drops are counted")
struct DatagramDropTests {
    @Test("a datagram the kernel refuses to send is counted in rejectedSends", arguments: StreamCase.backends)
    func rejectedSend(_ backend: EvplProtocol.Backend) throws {
        let loop = try makeLoop()
        let endpoint = try loop.bindDatagram(SocketAddress(host: "127.0.0.1", port: 0), protocol: EvplProtocol(.udp, backend: backend)) { _, _, _ in }
        // Broadcast without SO_BROADCAST: the kernel answers EACCES.
        try endpoint.send(to: SocketAddress(host: "255.255.255.255", port: 9), [1, 2, 3])
        try spin(loop, seconds: 10, "the rejected send") { endpoint.rejectedSends == 1 && endpoint.queuedDatagrams == 0 }
        // The endpoint still works after it.
        var echoed = 0
        let peer = try loop.bindDatagram(SocketAddress(host: "127.0.0.1", port: 0), protocol: EvplProtocol(.udp, backend: backend)) { _, _, _ in echoed += 1 }
        try endpoint.send(to: peer.localAddress, [4])
        try spin(loop, seconds: 10, "a datagram after the rejected one") { echoed == 1 }
        #expect(endpoint.rejectedSends == 1)
        endpoint.close()
        peer.close()
        expectNoLeaks(loop)
    }

    @Test("datagrams sent to a loop that is not reading are delivered or counted as kernel drops, one for one",
          arguments: StreamCase.backends)
    func kernelDropsAccountForEveryDatagram(_ backend: EvplProtocol.Backend) throws {
        let loop = try makeLoop()
        var delivered = 0
        let receiver = try loop.bindDatagram(SocketAddress(host: "127.0.0.1", port: 0), protocol: EvplProtocol(.udp, backend: backend)) { _, bytes, _ in
            if bytes.count == 1000 { delivered += 1 }
        }
        loop.runOnceWithoutBlocking()
        #expect(receiver.kernelReceiveDrops == 0)
        // The loop does not run while a plain socket sends far more than the
        // receive buffer holds.
        let sender = try RawDatagramSender()
        let total = 3000
        var sent = 0
        for _ in 0..<total where sender.send([UInt8](repeating: 7, count: 1000), to: receiver.localAddress) { sent += 1 }
        #expect(sent == total)
        var drops = 0
        try spin(loop, seconds: 10, "every datagram delivered or dropped") {
            drops = receiver.kernelReceiveDrops ?? 0
            return delivered + drops == sent
        }
        #expect(drops > 0, "the receive buffer never overflowed: \(delivered) delivered")
        #expect(delivered > 0)
        receiver.close()
        expectNoLeaks(loop)
    }

    @Test("an endpoint that ran out of pool buffers receives again when they come back", arguments: StreamCase.backends)
    func receivesAgainAfterTheCeiling(_ backend: EvplProtocol.Backend) throws {
        let loop = try makeLoop { $0.poolMaxBytes = 6 * 64 * 1024 }
        var held: [IOVec] = []
        var holding = true
        var delivered = 0
        let receiver = try loop.bindDatagram(SocketAddress(host: "127.0.0.1", port: 0), protocol: EvplProtocol(.udp, backend: backend)) { _, bytes, _ in
            delivered += 1
            if holding { held += bytes.retainedIOVecs() }
        }
        // A sender of its own: the loop's pool is the receiver's to exhaust.
        let sender = try RawDatagramSender()
        // One at a time until the application holds the whole pool and
        // nothing more can be received.
        var sent = 0
        while sent < 20 {
            try #require(sender.send([UInt8(sent)], to: receiver.localAddress))
            sent += 1
            try runLoop(loop, forMilliseconds: 50)
            if delivered < sent { break }
        }
        try #require(delivered < sent, "the pool ceiling never stopped the receiver")
        for _ in 0..<3 {
            try #require(sender.send([UInt8(sent)], to: receiver.localAddress))
            sent += 1
        }
        try runLoop(loop, forMilliseconds: 50)
        let stalledAt = delivered
        #expect(stalledAt < sent)
        // The application lets go: what waited in the kernel arrives, with no new datagram to announce it.
        holding = false
        for iovec in held { iovec.release() }
        held.removeAll()
        try spin(loop, seconds: 10, "the datagrams waiting in the kernel (\(stalledAt) of \(sent) before)") { delivered == sent }
        #expect(loop.statistics.memoryPauses >= 1)
        #expect(receiver.kernelReceiveDrops == 0)
        receiver.close()
        expectNoLeaks(loop)
    }
}

/// A plain UDP socket that the library knows nothing of.
final class RawDatagramSender {
    let fd: Int32

    init() throws {
        fd = socket(AF_INET, Int32(SOCK_DGRAM.rawValue), 0)
        try #require(fd >= 0)
    }

    /// Sends `bytes` as one datagram; whether the kernel took all of it.
    func send(_ bytes: [UInt8], to address: SocketAddress) -> Bool {
        let written = withRawSockAddr(address) { raw, length in
            bytes.withUnsafeBytes { sendto(fd, $0.baseAddress, $0.count, 0, raw, length) }
        }
        return written == bytes.count
    }

    deinit { close(fd) }
}
