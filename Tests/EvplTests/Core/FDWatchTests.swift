import Evpl
import Testing
#if canImport(Glibc)
import Glibc
#endif

@Suite("Caller-owned descriptors")
struct FDWatchTests {
    /// A non-blocking pipe; the caller closes both ends.
    static func makePipe() throws -> (read: Int32, write: Int32) {
        var ends: [Int32] = [-1, -1]
        try #require(pipe(&ends) == 0)
        for end in ends { _ = fcntl(end, F_SETFL, fcntl(end, F_GETFL) | O_NONBLOCK) }
        return (ends[0], ends[1])
    }

    @Test("read readiness reports bytes written from another thread; write readiness fires on an empty pipe", arguments: LoopWait.usable)
    func pipeReadiness(_ wait: LoopWait) throws {
        let loop = try makeLoop(waitingIn: wait)
        let ends = try Self.makePipe()
        defer {
            close(ends.read)
            close(ends.write)
        }
        var readBytes: [UInt8] = []
        var readEvents: [FDWatch.Events] = []
        let reader = try loop.watch(fd: ends.read, interest: .readable) { watch, events in
            readEvents.append(events)
            var chunk = [UInt8](repeating: 0, count: 64)
            while true {
                let count = read(watch.fd, &chunk, chunk.count)
                if count <= 0 { break }
                readBytes += chunk[0..<count]
            }
        }
        var writableSeen = 0
        let writer = try loop.watch(fd: ends.write, interest: .writable) { _, events in
            if events.contains(.writable) { writableSeen += 1 }
        }
        try spin(loop, seconds: 5, "write readiness") { writableSeen > 0 }
        #expect(readBytes.isEmpty)

        let writeEnd = ends.write
        let thread = TestThread {
            usleep(20_000)
            let message: [UInt8] = Array("from another thread".utf8)
            _ = message.withUnsafeBytes { write(writeEnd, $0.baseAddress, $0.count) }
        }
        try spin(loop, seconds: 5, "read readiness") { readBytes.count == 19 }
        thread.join()
        #expect(String(decoding: readBytes, as: UTF8.self) == "from another thread")
        #expect(readEvents.allSatisfy { $0.contains(.readable) })

        reader.remove()
        writer.remove()
        #expect(!reader.isActive && !writer.isActive)
        expectNoLeaks(loop)
    }

    @Test("a removed watch gets no more callbacks, even from inside its own callback", arguments: LoopWait.usable)
    func removeInCallback(_ wait: LoopWait) throws {
        let loop = try makeLoop(waitingIn: wait)
        let ends = try Self.makePipe()
        defer {
            close(ends.read)
            close(ends.write)
        }
        var calls = 0
        _ = try loop.watch(fd: ends.read, interest: .readable) { watch, _ in
            calls += 1
            watch.remove()
        }
        for round in 0..<3 {
            var byte: UInt8 = UInt8(round)
            #expect(write(ends.write, &byte, 1) == 1)
            try runLoop(loop, forMilliseconds: 20)
        }
        #expect(calls == 1)
        expectNoLeaks(loop)
    }

    @Test("closing the write end reports hang-up on the read end", arguments: LoopWait.usable)
    func hangUp(_ wait: LoopWait) throws {
        let loop = try makeLoop(waitingIn: wait)
        let ends = try Self.makePipe()
        defer { close(ends.read) }
        var events: FDWatch.Events = []
        let watch = try loop.watch(fd: ends.read, interest: .readable) { _, seen in events.formUnion(seen) }
        close(ends.write)
        try spin(loop, seconds: 5, "hang-up") { events.contains(.hangUp) }
        watch.remove()
        expectNoLeaks(loop)
    }
}
