import Evpl
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// Per-connection receive state on the server side.
private final class PatternReceiver {
    var received = 0
    var firstMismatch: Int?

    func take(_ bytes: ReceivedBytes) {
        bytes.forEachSegment { piece in
            if firstMismatch == nil, let index = patternMismatch(in: piece, at: received) {
                firstMismatch = received + index
            }
            received += piece.count
        }
    }
}

/// Behaviour only the io_uring backend has: provided-buffer exhaustion,
/// zero-copy sends, multishot accept. The shared scenarios run over it from
/// the stream suites.
@Suite("io_uring backend", .enabled(if: StreamCase.backends.contains(.ioUring), "io_uring is unavailable here"))
struct URingTests {
    let tcp = EvplProtocol(.tcp, backend: .ioUring)

    /// `count` io_uring TCP clients each send `bytesEach` pattern bytes in
    /// `chunk`-sized sends and finish; a listener on the same loop checks
    /// every byte. Returns the server side's receivers once all have closed.
    private func sendPatternStreams(on loop: EventLoop, count: Int, bytesEach: Int, chunk: Int) throws -> [PatternReceiver] {
        let listener = try Listener(address: SocketAddress(host: "127.0.0.1", port: 0), protocol: tcp)
        defer { listener.close() }
        var receivers: [PatternReceiver] = []
        var serverDisconnects = 0
        loop.attach(to: listener) { connection in
            let receiver = PatternReceiver()
            receivers.append(receiver)
            connection.handler = { _, event in
                switch event {
                case .received(let bytes): receiver.take(bytes)
                case .disconnected: serverDisconnects += 1
                default: break
                }
            }
        }
        for _ in 0..<count {
            _ = try loop.connect(to: listener.address, protocol: tcp) { connection, event in
                guard case .connected = event else { return }
                for offset in stride(from: 0, to: bytesEach, by: chunk) {
                    try? connection.send(patternBytes(from: offset, count: chunk))
                }
                connection.finish()
            }
        }
        try spin(loop, seconds: 60, "every stream received and closed") { serverDisconnects == count }
        return receivers
    }

    @Test("a one-buffer provided ring runs dry (ENOBUFS) and every byte of 8 concurrent streams still arrives")
    func bufferRingExhaustion() throws {
        let loop = try makeLoop(bufferSize: 4096) { $0.ioUringBufferRingEntries = 1 }
        let streams = 8
        let perStream = 256 * 1024
        let receivers = try sendPatternStreams(on: loop, count: streams, bytesEach: perStream, chunk: 16 * 1024)
        #expect(receivers.count == streams)
        #expect(receivers.allSatisfy { $0.received == perStream }, "\(receivers.map(\.received))")
        #expect(receivers.allSatisfy { $0.firstMismatch == nil })
        #expect(loop.statistics.receiveBufferShortages > 0, "the ring never ran dry: the test did not test ENOBUFS")
        expectNoLeaks(loop)
    }

    @Test("where the kernel consumes provided buffers incrementally, 64 one-byte messages an application holds share buffers instead of taking 64",
          .enabled(if: uringConsumesBuffersIncrementally, "the kernel lacks IOU_PBUF_RING_INC"))
    func incrementalConsumption() throws {
        let loop = try makeLoop(bufferSize: 4096) { $0.ioUringBufferRingEntries = 8 }
        let listener = try Listener(address: SocketAddress(host: "127.0.0.1", port: 0), protocol: tcp)
        defer { listener.close() }
        var held: [IOVec] = []
        loop.attach(to: listener) { connection in
            connection.handler = { _, event in
                if case .received(let bytes) = event { held += bytes.retainedIOVecs() }
            }
        }
        try spin(loop, "the listener to attach") { listener.attachedLoopCount == 1 }
        let fd = rawConnect(to: listener.address)
        defer { close(fd) }
        for index in 0..<64 {
            #expect(rawWriteAll(fd, [UInt8(index)]))
            try spin(loop, "byte \(index)") { held.reduce(0) { $0 + $1.length } == index + 1 }
        }
        #expect(held.map { $0.bytes[0] } == (0..<64).map { UInt8($0) })
        let buffersHeld = Set(held.map { ObjectIdentifier($0.buffer) }).count
        #expect(buffersHeld <= 2, "64 one-byte receives held \(buffersHeld) buffers")
        #expect(loop.bufferPool.buffersInUse <= 8 + 2, "\(loop.bufferPool.buffersInUse) buffers in use")
        for iovec in held { iovec.release() }
        held.removeAll()
    }

    @Test("close() with a zero-copy send in flight: one disconnected, nothing after it, every buffer back")
    func closeDuringZeroCopySend() throws {
        let (listenFD, bound) = try rawListen(SocketAddress(host: "127.0.0.1", port: 0))
        defer { close(listenFD) }
        let loop = try makeLoop { $0.zeroCopyToLoopback = true }
        let client = EventLog()
        // Nobody reads on the far side: once its socket buffers fill, the send waits in the kernel.
        let connection = try loop.connect(to: bound, protocol: tcp) { client.handle($0, $1) }
        try spin(loop, seconds: 5, "connected") { client.connected == 1 }
        for chunk in 0..<128 {
            try connection.send(patternBytes(from: chunk * 65536, count: 65536))
        }
        for _ in 0..<20 { loop.runOnceWithoutBlocking() }
        #expect(loop.statistics.zeroCopySends > 0)
        #expect(connection.queuedBytes > 0, "all 8 MiB left although nobody reads")
        connection.close()
        try spin(loop, seconds: 5, "the disconnect") { client.disconnected == 1 }
        let pool = loop.bufferPool
        try spin(loop, seconds: 5, "buffers released by late completions") { pool.buffersInUse - pool.buffersLentToKernel == 0 }
        #expect(client.disconnected == 1)
        #expect(client.eventsAfterDisconnect == 0)
        expectNoLeaks(loop)
    }

    @Test("1,000 connections accepted through multishot accept, each answered once")
    func thousandAccepts() throws {
        let loop = try makeLoop()
        let listener = try Listener(address: SocketAddress(host: "127.0.0.1", port: 0), protocol: tcp)
        var accepted = 0
        loop.attach(to: listener) { connection in
            accepted += 1
            connection.handler = { connection, event in
                if case .received(let bytes) = event { try? connection.send(bytes.array) }
            }
        }
        let count = 1000
        var answered = 0
        var clientDisconnects = 0
        for index in 0..<count {
            _ = try loop.connect(to: listener.address, protocol: tcp) { connection, event in
                switch event {
                case .connected:
                    try? connection.send([UInt8(truncatingIfNeeded: index)])
                case .received(let bytes):
                    if bytes.array == [UInt8(truncatingIfNeeded: index)] { answered += 1 }
                    connection.close()
                case .disconnected:
                    clientDisconnects += 1
                default:
                    break
                }
            }
        }
        try spin(loop, seconds: 60, "1,000 answers") { answered == count && clientDisconnects == count }
        #expect(accepted == count)
        listener.close()
        expectNoLeaks(loop)
    }

    @Test("with a kernel submission-polling thread (SQPOLL), 1,000 round trips are all answered exactly")
    func submissionPolling() throws {
        let loop = try makeLoop { $0.ioUringSQPoll = true }
        let listener = try Listener(address: SocketAddress(host: "127.0.0.1", port: 0), protocol: tcp)
        loop.attach(to: listener) { connection in
            connection.handler = { connection, event in
                if case .received(let bytes) = event { try? connection.send(bytes.array) }
            }
        }
        let rounds = 1000
        var answered = 0
        var mismatches = 0
        _ = try loop.connect(to: listener.address, protocol: tcp, segmenter: Segmenters.fixedLength(4)) { connection, event in
            switch event {
            case .connected:
                try? connection.send(patternBytes(from: 0, count: 4))
            case .received(let bytes):
                if bytes.array != patternBytes(from: answered * 4, count: 4) { mismatches += 1 }
                answered += 1
                if answered < rounds { try? connection.send(patternBytes(from: answered * 4, count: 4)) } else { connection.finish() }
            default:
                break
            }
        }
        try spin(loop, seconds: 30, "1,000 answers") { answered == rounds }
        #expect(mismatches == 0)
        listener.close()
        expectNoLeaks(loop)
    }

    @Test("a 16-entry completion queue overflows under 64 busy connections and no completion is lost")
    func completionQueueOverflow() throws {
        let loop = try makeLoop { config in
            config.ioUringEntries = 8
            config.ioUringCompletionEntries = 16
        }
        let streams = 64
        let perStream = 64 * 1024
        let receivers = try sendPatternStreams(on: loop, count: streams, bytesEach: perStream, chunk: 1024)
        #expect(receivers.count == streams)
        #expect(receivers.allSatisfy { $0.received == perStream && $0.firstMismatch == nil })
        #expect(loop.statistics.completionQueueOverflows > 0, "the CQ never overflowed: the test did not test overflow")
        expectNoLeaks(loop)
    }
}
