import Evpl
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// A scratch file on the disk (not tmpfs: O_DIRECT needs a real filesystem),
/// removed when the value goes away.
final class ScratchFile {
    let path = "/var/tmp/evpl-block-\(getpid())-\(UniqueName.next()).img"
    deinit { unlink(path) }

    /// A scratch file already `bytes` long (sparse).
    static func sized(_ bytes: Int) throws -> ScratchFile {
        let file = ScratchFile()
        let fd = open(file.path, O_CREAT | O_RDWR, 0o644)
        defer { if fd >= 0 { close(fd) } }
        try #require(fd >= 0 && ftruncate(fd, off_t(bytes)) == 0)
        return file
    }
}

/// Collects a device's completions by tag.
final class Completions {
    var byTag: [UInt64: BlockCompletion] = [:]
    var order: [UInt64] = []

    func record(_ completion: BlockCompletion) {
        byTag[completion.tag] = completion
        order.append(completion.tag)
    }
}

/// Engines that store data; the null engine only completes.
let storingEngines: [BlockEngine] = [.ioUring, .libaio, .psync].filter { $0.unavailableReason == nil }

@Suite("Block devices")
struct BlockTests {
    private func open(_ loop: EventLoop, _ file: ScratchFile, _ engine: BlockEngine, direct: Bool = false, depth: Int = 128) throws -> (BlockDevice, Completions) {
        let device = try loop.openBlockDevice(file.path, engine: engine, direct: direct, create: 1 << 30, queueDepth: depth)
        let completions = Completions()
        device.handler = { _, completion in completions.record(completion) }
        return (device, completions)
    }

    private func filled(_ loop: EventLoop, from offset: Int, count: Int) throws -> IOVec {
        var iovec = try loop.bufferPool.allocate()
        iovec.length = count
        fillPattern(iovec.bytes, from: offset)
        return iovec
    }

    @Test("aligned write, read and flush issued together all complete; the bytes read back", arguments: storingEngines, [false, true])
    func writeReadFlush(engine: BlockEngine, direct: Bool) throws {
        let loop = try makeLoop()
        let file = ScratchFile()
        let (device, completions) = try open(loop, file, engine, direct: direct)
        let data = try filled(loop, from: 4096, count: 4096)
        let readBack = try loop.bufferPool.allocate()
        device.write([data], at: 4096, tag: 1)
        device.read(into: [readBack.slice(from: 0, length: 4096)], at: 4096, tag: 2)
        device.flush(tag: 3)
        try spin(loop, seconds: 10, "three completions") { completions.order.count == 3 }
        #expect([1, 2, 3].allSatisfy { completions.byTag[$0]?.error == nil }, "\(completions.byTag)")
        #expect(completions.byTag[1]?.bytes == 4096)
        // Issued together, the read may run before the write: read again now.
        device.read(into: [readBack.slice(from: 0, length: 4096)], at: 4096, tag: 4)
        try spin(loop, seconds: 10, "the second read") { completions.byTag[4] != nil }
        #expect(completions.byTag[4]?.error == nil)
        #expect(patternMismatch(in: UnsafeRawBufferPointer(rebasing: UnsafeRawBufferPointer(readBack.bytes)[0..<4096]), at: 4096) == nil)
        if engine == .ioUring {
            #expect(loop.statistics.fixedBufferTransfers >= 3, "pool memory should go through registered fixed buffers")
        }
        data.release()
        readBack.release()
        device.close()
        expectNoLeaks(loop)
    }

    @Test("512 writes at queue depth 32: at most 32 at the engine, all complete, every block reads back", arguments: storingEngines + [.null])
    func deepQueue(engine: BlockEngine) throws {
        let loop = try makeLoop()
        let file = ScratchFile()
        let (device, completions) = try open(loop, file, engine, depth: 32)
        // Each block its own bytes (a 64 KiB pool buffer holds 16 of them).
        let buffers = try (0..<32).map { try filled(loop, from: $0 * 65_536, count: 65_536) }
        for index in 0..<512 {
            device.write([buffers[index / 16].slice(from: index % 16 * 4096, length: 4096)], at: UInt64(index) * 4096, tag: UInt64(index))
        }
        #expect(device.pendingRequests == 512)
        #expect(device.requestsAtEngine == 32, "the rest wait inside the device")
        var mostAtEngine = 0
        try spin(loop, seconds: 30, "512 completions") {
            mostAtEngine = max(mostAtEngine, device.requestsAtEngine)
            return completions.order.count == 512
        }
        #expect(mostAtEngine <= 32)
        #expect(completions.byTag.values.allSatisfy { $0.error == nil && $0.bytes == 4096 })
        #expect(Set(completions.order) == Set(0..<512))
        if engine != .null {
            // Read every block back, 16 per buffer, and compare.
            let readBack = try (0..<32).map { _ in try loop.bufferPool.allocate() }
            for index in 0..<512 {
                device.read(into: [readBack[index / 16].slice(from: index % 16 * 4096, length: 4096)], at: UInt64(index) * 4096, tag: UInt64(1000 + index))
            }
            try spin(loop, seconds: 30, "512 reads") { completions.order.count == 1024 }
            #expect((0..<512).allSatisfy { completions.byTag[UInt64(1000 + $0)]?.error == nil })
            for (index, buffer) in readBack.enumerated() {
                let bytes = UnsafeRawBufferPointer(rebasing: UnsafeRawBufferPointer(buffer.bytes)[0..<65_536])
                #expect(patternMismatch(in: bytes, at: index * 65_536) == nil, "blocks \(index * 16) to \(index * 16 + 15)")
                buffer.release()
            }
        }
        for buffer in buffers { buffer.release() }
        device.close()
        expectNoLeaks(loop)
    }

    @Test("closing with requests still waiting beyond the depth completes every one, then closes", arguments: storingEngines + [.null])
    func closeWithWaitingRequests(engine: BlockEngine) throws {
        let loop = try makeLoop()
        let file = ScratchFile()
        let (device, completions) = try open(loop, file, engine, depth: 2)
        let data = try filled(loop, from: 0, count: 4096)
        for index in 0..<10 {
            device.write([data], at: UInt64(index) * 4096, tag: UInt64(index))
        }
        device.close()
        try spin(loop, seconds: 30, "the 10 writes submitted before close") { completions.order.count == 10 }
        #expect(completions.byTag.values.allSatisfy { $0.error == nil && $0.bytes == 4096 })
        #expect(device.pendingRequests == 0)
        data.release()
        expectNoLeaks(loop)
    }

    @Test("a device its owner drops with requests in flight finishes every one, then goes away", arguments: storingEngines + [.null])
    func droppedWithRequestsInFlight(engine: BlockEngine) throws {
        let loop = try makeLoop()
        let file = ScratchFile()
        let data = try filled(loop, from: 0, count: 4096)
        let completions = Completions()
        weak var dropped: BlockDevice?
        do {
            let device = try loop.openBlockDevice(file.path, engine: engine, create: 1 << 20, queueDepth: 4)
            device.handler = { _, completion in completions.record(completion) }
            for index in 0..<16 { device.write([data], at: UInt64(index) * 4096, tag: UInt64(index)) }
            dropped = device
        }
        #expect(dropped != nil, "requests in flight keep the device")
        try spin(loop, seconds: 30, "the 16 writes of a dropped device") { completions.order.count == 16 }
        #expect(completions.byTag.values.allSatisfy { $0.error == nil && $0.bytes == 4096 })
        try spin(loop, seconds: 30, "the dropped device to go") { dropped == nil }
        data.release()
        expectNoLeaks(loop)
    }

    @Test("a loop that goes away with io_uring block reads in flight lets their device go")
    func loopGoneWithRequestsInFlight() throws {
        let file = try ScratchFile.sized(1 << 20)
        weak var dropped: BlockDevice?
        do {
            let loop = try makeLoop()
            let device = try loop.openBlockDevice(file.path, engine: .ioUring, direct: true, queueDepth: 8)
            var buffers: [IOVec] = []
            for index in 0..<8 {
                var iovec = try loop.bufferPool.allocate()
                iovec.length = 4096
                buffers.append(iovec)
                device.read(into: iovec, at: UInt64(index) * 4096, tag: UInt64(index))
            }
            loop.runOnce()
            dropped = device
            for iovec in buffers { iovec.release() }
        }
        #expect(dropped == nil)
    }

    @Test("a loop that goes away in the iteration its dropped device finished its last request lets the device go")
    func loopGoneRightAfterTheLastCompletion() throws {
        weak var dropped: BlockDevice?
        do {
            let loop = try makeLoop()
            let file = ScratchFile()
            var iovec = try loop.bufferPool.allocate()
            iovec.length = 4096
            var completed = false
            do {
                let device = try loop.openBlockDevice(file.path, engine: .null, create: 1 << 20, queueDepth: 4)
                device.handler = { _, _ in completed = true }
                device.read(into: iovec, at: 0, tag: 1)
                dropped = device
            }
            // Stops in the pass that delivered the completion, before the
            // device's end-of-iteration release could run.
            while !completed { loop.runOnce() }
            #expect(dropped != nil)
            iovec.release()
        }
        #expect(dropped == nil)
    }

    @Test("an unaligned buffer under O_DIRECT goes through a bounce buffer and still round-trips", arguments: storingEngines)
    func unalignedBuffer(engine: BlockEngine) throws {
        let loop = try makeLoop()
        let file = ScratchFile()
        let (device, completions) = try open(loop, file, engine, direct: true)
        let buffer = try loop.bufferPool.allocate()
        let unaligned = buffer.slice(from: 100, length: 8192)
        fillPattern(unaligned.bytes, from: 8192)
        device.write([unaligned], at: 8192, tag: 1)
        try spin(loop, seconds: 10, "the write") { completions.byTag[1] != nil }
        let target = try loop.bufferPool.allocate()
        let unalignedTarget = target.slice(from: 7, length: 8192)
        device.read(into: [unalignedTarget], at: 8192, tag: 2)
        try spin(loop, seconds: 10, "the read") { completions.byTag[2] != nil }
        #expect(completions.byTag[1]?.error == nil && completions.byTag[2]?.error == nil, "\(completions.byTag)")
        #expect(patternMismatch(in: UnsafeRawBufferPointer(unalignedTarget.bytes), at: 8192) == nil)
        buffer.release()
        target.release()
        device.close()
        expectNoLeaks(loop)
    }

    @Test("discard and write-zeroes read back as zeros", arguments: storingEngines)
    func discardAndWriteZeroes(engine: BlockEngine) throws {
        let loop = try makeLoop()
        let file = ScratchFile()
        let (device, completions) = try open(loop, file, engine)
        let data = try filled(loop, from: 0, count: 65536)
        device.write([data], at: 0, tag: 1)
        try spin(loop, seconds: 10, "the write") { completions.byTag[1] != nil }
        device.discard(at: 0, length: 16384, tag: 2)
        device.writeZeroes(at: 32768, length: 16384, tag: 3)
        try spin(loop, seconds: 10, "discard and write-zeroes") { completions.byTag[2] != nil && completions.byTag[3] != nil }
        let readBack = try loop.bufferPool.allocate()
        device.read(into: [readBack], at: 0, tag: 4)
        try spin(loop, seconds: 10, "the read") { completions.byTag[4] != nil }
        #expect((1...4).allSatisfy { completions.byTag[UInt64($0)]?.error == nil }, "\(completions.byTag)")
        let bytes = UnsafeRawBufferPointer(readBack.bytes)
        #expect(bytes[0..<16384].allSatisfy { $0 == 0 })
        #expect(patternMismatch(in: UnsafeRawBufferPointer(rebasing: bytes[16384..<32768]), at: 16384) == nil)
        #expect(bytes[32768..<49152].allSatisfy { $0 == 0 })
        #expect(patternMismatch(in: UnsafeRawBufferPointer(rebasing: bytes[49152..<65536]), at: 49152) == nil)
        data.release()
        readBack.release()
        device.close()
        expectNoLeaks(loop)
    }

    @Test("a read past the end completes with an EIO error, not success", arguments: storingEngines)
    func readPastEnd(engine: BlockEngine) throws {
        let loop = try makeLoop()
        let file = ScratchFile()
        let (device, completions) = try open(loop, file, engine)
        let buffer = try loop.bufferPool.allocate()
        device.read(into: [buffer.slice(from: 0, length: 8192)], at: (1 << 30) - 4096, tag: 1)
        try spin(loop, seconds: 10, "the read") { completions.byTag[1] != nil }
        #expect(completions.byTag[1]?.error?.errno == EIO, "\(String(describing: completions.byTag[1]))")
        buffer.release()
        device.close()
        expectNoLeaks(loop)
    }

    @Test("an offset past the largest file offset is an EINVAL completion, never a trap", arguments: storingEngines + [.null])
    func offsetOverflow(engine: BlockEngine) throws {
        let loop = try makeLoop()
        let file = ScratchFile()
        let (device, completions) = try open(loop, file, engine)
        let buffer = try loop.bufferPool.allocate()
        let offsets: [UInt64] = [UInt64.max, UInt64(Int64.max), UInt64(Int64.max) - 100, 1 << 63]
        for (index, offset) in offsets.enumerated() {
            device.read(into: [buffer.slice(from: 0, length: 4096)], at: offset, tag: UInt64(index))
        }
        device.write([buffer.slice(from: 0, length: 4096)], at: UInt64.max - 10, tag: 99)
        try spin(loop, seconds: 10, "every completion") { completions.order.count == offsets.count + 1 }
        for (tag, completion) in completions.byTag {
            #expect(completion.error?.code == .invalidArgument && completion.error?.errno == EINVAL, "tag \(tag): \(completion)")
        }
        buffer.release()
        device.close()
        expectNoLeaks(loop)
    }

    @Test("a missing file is a thrown error naming the path; passthrough and VFIO are unavailable")
    func openErrors() throws {
        let loop = try makeLoop()
        #expect {
            _ = try loop.openBlockDevice("/var/tmp/evpl-no-such-file-\(getpid())")
        } throws: { error in
            guard let error = error as? EvplError else { return false }
            return error.errno == ENOENT && "\(error)".contains("evpl-no-such-file")
        }
        let file = ScratchFile()
        for engine in [BlockEngine.nvmePassthrough, .vfioNVMe] {
            #expect {
                _ = try loop.openBlockDevice(file.path, engine: engine, create: 4096)
            } throws: { error in
                (error as? EvplError)?.code == .unavailable
            }
        }
        #expect { _ = try loop.openBlockDevice("http://example/disk") } throws: { ($0 as? EvplError)?.code == .invalidArgument }
        expectNoLeaks(loop)
    }

    @Test("a block read and a TCP exchange complete in the same loop", arguments: storingEngines)
    func blockAndNetworkTogether(engine: BlockEngine) throws {
        let loop = try makeLoop()
        let file = ScratchFile()
        let (device, completions) = try open(loop, file, engine)
        let data = try filled(loop, from: 0, count: 4096)
        device.write([data], at: 0, tag: 1)
        try spin(loop, seconds: 10, "the write") { completions.byTag[1] != nil }

        let listener = try Listener(address: SocketAddress(host: "127.0.0.1", port: 0), protocol: .tcp)
        loop.attach(to: listener) { connection in
            connection.handler = { connection, event in
                guard case .received = event else { return }
                // Answer a request with the block's bytes, read on this very loop.
                let buffer = try? loop.bufferPool.allocate()
                guard let buffer else { return }
                device.handler = { _, completion in
                    completions.record(completion)
                    try? connection.send(taking: buffer.slice(from: 0, length: completion.bytes))
                }
                device.read(into: [buffer.slice(from: 0, length: 4096)], at: 0, tag: 2)
            }
        }
        var reply: [UInt8] = []
        _ = try loop.connect(to: listener.address, protocol: .tcp) { connection, event in
            switch event {
            case .connected: try? connection.send([1])
            case .received(let bytes): reply += bytes.array
            default: break
            }
        }
        try spin(loop, seconds: 10, "the block's bytes over TCP") { reply.count == 4096 }
        #expect(reply == patternBytes(from: 0, count: 4096))
        data.release()
        device.close()
        listener.close()
        expectNoLeaks(loop)
    }
}
