import Evpl
import Testing

/// One side of a full-duplex transfer: sends `total` pattern bytes in random
/// chunks, never more than `lead` bytes ahead of what it has received, and
/// checks every byte it receives against the pattern as it arrives.
final class DuplexPeer {
    let total: Int
    let lead: Int
    private var random: SeededRandom
    private var nextChunk: Int
    private let scratch = UnsafeMutableRawBufferPointer.allocate(byteCount: 65536, alignment: 16)

    var sent = 0
    var received = 0
    var maxLead = 0
    var firstMismatch: Int?
    var sendError: EvplError?
    var connected = 0
    var disconnects = 0
    var disconnectError: EvplError?
    var receivedAtDisconnect = -1
    var finished = false
    var eventsAfterDisconnect = 0

    init(total: Int, lead: Int, seed: UInt64) {
        self.total = total
        self.lead = lead
        self.random = SeededRandom(seed: seed)
        self.nextChunk = random.next(in: 1...65536)
    }

    deinit { scratch.deallocate() }

    func handle(_ connection: Connection, _ event: ConnectionEvent) {
        if disconnects > 0 { eventsAfterDisconnect += 1 }
        switch event {
        case .connected:
            connected += 1
            pump(connection)
        case .received(let bytes):
            bytes.forEachSegment { piece in
                if firstMismatch == nil, let index = patternMismatch(in: piece, at: received) {
                    firstMismatch = received + index
                }
                received += piece.count
            }
            pump(connection)
        case .disconnected(let error):
            disconnects += 1
            disconnectError = error
            receivedAtDisconnect = received
        default:
            break
        }
    }

    private func pump(_ connection: Connection) {
        while sent < total && sendError == nil {
            let chunk = min(nextChunk, total - sent)
            guard sent + chunk - received <= lead else { break }
            let piece = UnsafeMutableRawBufferPointer(rebasing: scratch[0..<chunk])
            fillPattern(piece, from: sent)
            do throws(EvplError) {
                try connection.send(copying: UnsafeRawBufferPointer(piece))
            } catch {
                sendError = error
                return
            }
            sent += chunk
            maxLead = max(maxLead, sent - received)
            nextChunk = random.next(in: 1...65536)
        }
        if !finished && sent == total && received == total {
            finished = true
            connection.finish()
        }
    }
}

@Suite("Large streams")
struct LargeStreamTests {
    // 128 MiB each way takes well under a second per case in a debug build
    // (0.1-0.2 s measured), far below the one-minute budget, so the full size is kept.
    static let total = 128 << 20
    static let lead = 4 << 20

    @Test("the fast pattern helpers agree with patternByte and catch a wrong byte")
    func patternHelpers() {
        let count = 300_000
        let offset = (1 << 24) - 1000  // crosses rows and a change in the third byte
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: count, alignment: 1)
        defer { buffer.deallocate() }
        fillPattern(buffer, from: offset)
        #expect((0..<count).allSatisfy { buffer[$0] == patternByte(offset + $0) })
        #expect(patternMismatch(in: UnsafeRawBufferPointer(buffer), at: offset) == nil)
        #expect(patternMismatch(in: UnsafeRawBufferPointer(buffer), at: offset + 1) == 0)
        for wrong in [0, 255, 256, 123_457, count - 1] {
            buffer[wrong] ^= 0x40
            #expect(patternMismatch(in: UnsafeRawBufferPointer(buffer), at: offset) == wrong)
            buffer[wrong] ^= 0x40
        }
    }

    @Test("full duplex: 128 MiB each way in random chunks, every byte checked, then one clean disconnect each",
          arguments: StreamCase.core)
    func fullDuplex(_ streamCase: StreamCase) throws {
        let loop = try makeLoop()
        let listener = try Listener(address: streamCase.listenAddress(), protocol: streamCase.evplProtocol)
        let server = DuplexPeer(total: Self.total, lead: Self.lead, seed: 0x5EED_0001)
        let client = DuplexPeer(total: Self.total, lead: Self.lead, seed: 0x5EED_0002)
        loop.attach(to: listener) { connection in
            connection.handler = server.handle
        }
        _ = try loop.connect(to: listener.address, protocol: streamCase.evplProtocol, client.handle)

        try spin(loop, seconds: 60, "both sides to transfer everything and disconnect") {
            (server.disconnects >= 1 && client.disconnects >= 1)
                || server.firstMismatch != nil || client.firstMismatch != nil
        }
        for _ in 0..<10 { loop.runOnceWithoutBlocking() }

        for (name, peer) in [("server", server), ("client", client)] {
            #expect(peer.firstMismatch == nil, "\(name): first wrong byte at offset \(peer.firstMismatch ?? -1)")
            #expect(peer.sendError == nil, "\(name): \(String(describing: peer.sendError))")
            #expect(peer.sent == Self.total, "\(name) sent \(peer.sent)")
            #expect(peer.received == Self.total, "\(name) received \(peer.received)")
            #expect(peer.receivedAtDisconnect == Self.total, "\(name) had \(peer.receivedAtDisconnect) bytes at its disconnect")
            #expect(peer.maxLead <= Self.lead)
            #expect(peer.connected == 1)
            #expect(peer.disconnects == 1)
            #expect(peer.eventsAfterDisconnect == 0)
            #expect(peer.disconnectError == nil, "\(name): \(String(describing: peer.disconnectError))")
        }
        listener.close()
        expectNoLeaks(loop)
    }
}
