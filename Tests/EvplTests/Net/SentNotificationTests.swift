import Evpl
import Testing

@Suite("Sent notifications and writable")
struct SentNotificationTests {
    static let messageCount = 1000
    static func messageSize(_ index: Int) -> Int { 1 + (index * 7919) % 3000 }
    static var totalBytes: Int { (0..<messageCount).reduce(0) { $0 + messageSize($1) } }

    /// Sends 1000 messages of varied sizes on connect, with `notifiesSent` as
    /// given, and runs until the peer has every byte.
    private func sendMessages(_ streamCase: StreamCase, notifiesSent: Bool) throws -> EventLog {
        let loop = try makeLoop()
        let listener = try Listener(address: streamCase.listenAddress(), protocol: streamCase.evplProtocol)
        var serverBytes = 0
        loop.attach(to: listener) { connection in
            connection.handler = { _, event in
                if case .received(let bytes) = event { serverBytes += bytes.count }
            }
        }
        let client = EventLog()
        var sendFailures = 0
        var offset = 0
        let connection = try loop.connect(to: listener.address, protocol: streamCase.evplProtocol) { connection, event in
            client.handle(connection, event)
            guard case .connected = event else { return }
            connection.notifiesSent = notifiesSent
            for index in 0..<Self.messageCount {
                let size = Self.messageSize(index)
                do { try connection.send(patternBytes(from: offset, count: size)) } catch { sendFailures += 1 }
                offset += size
            }
        }
        try spin(loop, seconds: 30, "all bytes at the peer") { serverBytes == Self.totalBytes }
        for _ in 0..<10 { loop.runOnceWithoutBlocking() }
        #expect(sendFailures == 0)
        #expect(connection.queuedBytes == 0)
        #expect(serverBytes == Self.totalBytes)
        connection.close()
        try spin(loop, seconds: 10, "client disconnect") { client.disconnected == 1 }
        listener.close()
        expectNoLeaks(loop)
        return client
    }

    @Test("without notifiesSent there are no sent events", arguments: StreamCase.allCases)
    func offByDefault(_ streamCase: StreamCase) throws {
        let client = try sendMessages(streamCase, notifiesSent: false)
        #expect(client.sentEvents == 0)
        #expect(client.sentBytes == 0 && client.sentMessages == 0)
    }

    @Test("with notifiesSent, sent events add up to every byte and all 1000 messages", arguments: StreamCase.allCases)
    func addsUp(_ streamCase: StreamCase) throws {
        let client = try sendMessages(streamCase, notifiesSent: true)
        #expect(client.sentEvents >= 1)
        #expect(client.sentBytes == Self.totalBytes)
        #expect(client.sentMessages == Self.messageCount)
    }

    @Test("writable fires once the queue drains below the low watermark", arguments: StreamCase.allCases)
    func writableBelowWatermark(_ streamCase: StreamCase) throws {
        let watermark = 64 * 1024
        let total = 4 << 20
        let loop = try makeLoop { $0.sendLowWatermark = watermark }
        let listener = try Listener(address: streamCase.listenAddress(), protocol: streamCase.evplProtocol)
        var serverBytes = 0
        loop.attach(to: listener) { connection in
            connection.handler = { _, event in
                if case .received(let bytes) = event { serverBytes += bytes.count }
            }
        }
        var queuedAfterSending = 0
        var queuedAtWritable: [Int] = []
        var sendFailures = 0
        let client = EventLog()
        let chunk = patternBytes(from: 0, count: 1 << 20)
        let connection = try loop.connect(to: listener.address, protocol: streamCase.evplProtocol) { connection, event in
            client.handle(connection, event)
            switch event {
            case .connected:
                for _ in 0..<(total / chunk.count) {
                    do { try connection.send(chunk) } catch { sendFailures += 1 }
                }
                queuedAfterSending = connection.queuedBytes
            case .writable:
                queuedAtWritable.append(connection.queuedBytes)
            default:
                break
            }
        }
        try spin(loop, seconds: 30, "4 MiB at the peer and writable") { serverBytes == total && client.writable >= 1 }
        for _ in 0..<10 { loop.runOnceWithoutBlocking() }
        #expect(sendFailures == 0)
        #expect(queuedAfterSending == total)
        #expect(client.writable == 1)
        #expect(queuedAtWritable.allSatisfy { $0 < watermark }, "queued bytes at writable: \(queuedAtWritable)")
        #expect(serverBytes == total)
        connection.close()
        try spin(loop, seconds: 10, "client disconnect") { client.disconnected == 1 }
        listener.close()
        expectNoLeaks(loop)
    }
}
