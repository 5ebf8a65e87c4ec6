@testable import Evpl
import Testing
#if canImport(Glibc)
import Glibc
#endif

@Suite("In-process streams")
struct InProcessTests {
    @Test("a message goes to a loop of the same process and back")
    func echoOneLoop() throws {
        let loop = try makeLoop()
        let listener = try Listener(address: SocketAddress(inProcessName: "echo-\(UniqueName.next())"), protocol: EvplProtocol(.inproc))
        defer { listener.close() }
        loop.attach(to: listener) { connection in
            connection.handler = { connection, event in
                if case .received(let bytes) = event { try? connection.send(bytes.array) }
            }
        }
        var reply: [UInt8] = []
        var connected = false
        let client = try loop.connect(to: listener.address, protocol: EvplProtocol(.inproc)) { connection, event in
            switch event {
            case .connected: connected = true
            case .received(let bytes): reply += bytes.array
            default: break
            }
        }
        try client.send(Array("hello".utf8))
        try spin(loop, "the echo") { reply.count == 5 }
        #expect(connected)
        #expect(String(decoding: reply, as: UTF8.self) == "hello")
        expectNoLeaks(loop)
    }
}
