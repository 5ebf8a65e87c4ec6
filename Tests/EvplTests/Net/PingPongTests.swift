import Evpl
import Testing

@Suite("Ping-pong")
struct PingPongTests {
    /// The request of round `index`: its big-endian number, then pattern bytes.
    static func request(_ index: Int, size: Int) -> [UInt8] {
        var bytes = patternBytes(from: index * size, count: size)
        for position in 0..<min(4, size) {
            bytes[position] = UInt8(truncatingIfNeeded: index >> (8 * (3 - position)))
        }
        return bytes
    }

    @Test("10,000 sequential request/echo round trips, every response equal to its request",
          arguments: StreamCase.core, [4, 64])
    func sequentialRoundTrips(_ streamCase: StreamCase, requestSize: Int) throws {
        let rounds = 10_000
        let loop = try makeLoop()
        let listener = try Listener(address: streamCase.listenAddress(), protocol: streamCase.evplProtocol)

        var serverBytes = 0
        var serverDisconnects = 0
        var serverError: EvplError?
        loop.attach(to: listener) { connection in
            connection.handler = { connection, event in
                switch event {
                case .received(let bytes):
                    serverBytes += bytes.count
                    bytes.forEachSegment { try? connection.send(copying: $0) }
                case .disconnected(let error):
                    serverDisconnects += 1
                    serverError = error
                default:
                    break
                }
            }
        }

        var completed = 0
        var mismatches = 0
        var extraBytes = 0
        var pending: [UInt8] = []
        var sendFailures = 0
        let client = EventLog()
        _ = try loop.connect(to: listener.address, protocol: streamCase.evplProtocol) { connection, event in
            switch event {
            case .connected:
                client.handle(connection, event)
                do { try connection.send(Self.request(0, size: requestSize)) } catch { sendFailures += 1 }
            case .received(let bytes):
                pending.append(contentsOf: bytes.array)
                while pending.count >= requestSize {
                    if Array(pending[0..<requestSize]) != Self.request(completed, size: requestSize) { mismatches += 1 }
                    pending.removeFirst(requestSize)
                    completed += 1
                    // Only one request is ever outstanding: nothing may follow its echo.
                    extraBytes += pending.count
                    if completed < rounds {
                        do { try connection.send(Self.request(completed, size: requestSize)) } catch { sendFailures += 1 }
                    } else {
                        connection.finish()
                    }
                }
            default:
                client.handle(connection, event)
            }
        }

        try spin(loop, seconds: 120, "\(rounds) round trips and both disconnects") {
            client.disconnected == 1 && serverDisconnects == 1
        }
        for _ in 0..<10 { loop.runOnceWithoutBlocking() }
        #expect(completed == rounds)
        #expect(mismatches == 0)
        #expect(extraBytes == 0)
        #expect(sendFailures == 0)
        #expect(pending.isEmpty)
        #expect(serverBytes == rounds * requestSize)
        #expect(client.connected == 1 && client.disconnected == 1 && serverDisconnects == 1)
        #expect(client.eventsAfterDisconnect == 0)
        #expect(client.disconnectError == nil, "\(String(describing: client.disconnectError))")
        #expect(serverError == nil, "\(String(describing: serverError))")
        listener.close()
        expectNoLeaks(loop)
    }
}
