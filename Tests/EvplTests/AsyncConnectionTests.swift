import Evpl
import Synchronization
import Testing
#if canImport(Glibc)
import Glibc
#endif

@Suite("Async connections")
struct AsyncConnectionTests {
    @Test("hello: an async client and an async server exchange greetings and both see the orderly end", arguments: StreamCase.allCases)
    func hello(_ setting: StreamCase) throws {
        let loop = try makeLoop()
        let listener = try Listener(address: setting.listenAddress(), protocol: setting.evplProtocol)
        defer { listener.close() }
        let address = listener.address
        let evplProtocol = setting.evplProtocol
        try runTasks(on: loop, "hello", [
            {
                let connection = try await acceptOne(from: listener)
                try await connection.executeThenClose { connection in
                    #expect(try await receiveBytes(connection, count: 5) == Array("hello".utf8))
                    try await connection.write(Array("world".utf8))
                    #expect(try await connection.receive() == nil, "the client finished")
                }
            },
            {
                let connection = try await currentLoop().connect(to: address, protocol: evplProtocol)
                try await connection.write(Array("hello".utf8))
                connection.finish()
                #expect(try await receiveBytes(connection, count: 6) == Array("world".utf8))
            },
        ])
        expectNoLeaks(loop)
    }

    @Test("ping-pong: 200 length-prefixed messages of random sizes up to 100 KB echo back intact, in order", arguments: StreamCase.core)
    func pingPong(_ setting: StreamCase) throws {
        let loop = try makeLoop(bufferSize: 16 * 1024)
        let listener = try Listener(address: setting.listenAddress(), protocol: setting.evplProtocol)
        defer { listener.close() }
        let address = listener.address
        let evplProtocol = setting.evplProtocol
        try runTasks(on: loop, "ping-pong", [
            {
                let connection = try await acceptOne(from: listener, segmenter: Segmenters.lengthPrefixed32())
                try await connection.executeThenClose { connection in
                    for try await message in connection.inbound {
                        try await connection.write(message.array)
                    }
                }
            },
            {
                let connection = try await currentLoop().connect(to: address, protocol: evplProtocol, segmenter: Segmenters.lengthPrefixed32())
                var random = SeededRandom(seed: 6)
                for round in 0..<200 {
                    let size = Int(random.next() % 100_000) + 1
                    let payload = patternBytes(from: round * 7, count: size)
                    let length = UInt32(size)
                    try await connection.write([UInt8(length >> 24), UInt8((length >> 16) & 0xFF), UInt8((length >> 8) & 0xFF), UInt8(length & 0xFF)] + payload)
                    let echo = try #require(try await connection.receive())
                    #expect(echo.count == size + 4)
                    #expect(Array(echo.array.dropFirst(4)) == payload, "round \(round)")
                }
                connection.finish()
                #expect(try await connection.receive() == nil)
            },
        ])
        expectNoLeaks(loop)
    }
}
