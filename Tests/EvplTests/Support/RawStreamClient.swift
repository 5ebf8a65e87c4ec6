import Evpl
#if canImport(Glibc)
import Glibc
#endif

/// What a raw client saw of one echoed stream.
struct EchoOutcome: Sendable, CustomStringConvertible {
    /// Bytes written before the half-close.
    var sent = 0
    /// Bytes read back before the end of stream (or the error).
    var received = 0
    /// Stream offset of the first byte that differs from the pattern.
    var firstMismatch: Int?
    /// The `errno` that ended the exchange early, or 0.
    var error: Int32 = 0
    /// The end of stream was read.
    var sawEndOfStream = false
    /// The deadline passed first.
    var timedOut = false

    var isComplete: Bool { error == 0 && !timedOut && firstMismatch == nil && sawEndOfStream && received == sent }

    var description: String {
        "sent \(sent), received \(received), eof \(sawEndOfStream), errno \(error), timed out \(timedOut), first mismatch \(firstMismatch.map(String.init) ?? "none")"
    }
}

/// A plain POSIX client, written apart from the library, that streams the
/// position-keyed pattern to an echo server and checks what comes back.
enum RawStreamClient {
    /// Writes `total` bytes in random chunks of 1 byte to `maxChunk` while
    /// reading the echo (full duplex, through `poll`), half-closes with
    /// `shutdown(SHUT_WR)`, then reads until the end of stream.
    ///
    /// With `readDelayMilliseconds`, nothing is read until that long after
    /// the connect: a peer that does not read, then does.
    static func echo(to address: SocketAddress, total: Int, maxChunk: Int = 64 * 1024, seed: UInt64,
                     readDelayMilliseconds: Int = 0, seconds: Double = 60) -> EchoOutcome {
        var outcome = EchoOutcome()
        let fd = rawConnect(to: address)
        guard fd >= 0 else {
            outcome.error = errno
            return outcome
        }
        defer { close(fd) }
        _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
        var random = SeededRandom(seed: seed)
        let chunk = UnsafeMutableRawBufferPointer.allocate(byteCount: max(maxChunk, 256 * 1024), alignment: 16)
        defer { chunk.deallocate() }
        let start = MonotonicClock.nanoseconds()
        let deadline = start + UInt64(seconds * 1e9)
        let readFrom = start + UInt64(readDelayMilliseconds) * 1_000_000
        var shutDown = false
        while !outcome.sawEndOfStream {
            let now = MonotonicClock.nanoseconds()
            if now > deadline {
                outcome.timedOut = true
                return outcome
            }
            let reading = now >= readFrom
            var events: Int16 = 0
            if reading { events |= Int16(POLLIN) }
            if !shutDown { events |= Int16(POLLOUT) }
            var descriptor = pollfd(fd: fd, events: events, revents: 0)
            _ = poll(&descriptor, 1, reading ? 100 : 10)
            if !shutDown && descriptor.revents & Int16(POLLOUT | POLLERR | POLLHUP) != 0 {
                let length = min(random.next(in: 1...maxChunk), total - outcome.sent)
                let piece = UnsafeMutableRawBufferPointer(rebasing: chunk[0..<length])
                fillPattern(piece, from: outcome.sent)
                let written = write(fd, piece.baseAddress, length)
                if written > 0 {
                    outcome.sent += written
                } else if written < 0 && errno != EAGAIN && errno != EINTR {
                    outcome.error = errno
                    return outcome
                }
                if outcome.sent == total {
                    shutdown(fd, Int32(SHUT_WR))
                    shutDown = true
                }
            }
            if reading && descriptor.revents & Int16(POLLIN | POLLERR | POLLHUP) != 0 {
                let count = read(fd, chunk.baseAddress, chunk.count)
                if count > 0 {
                    if outcome.firstMismatch == nil, let index = patternMismatch(in: UnsafeRawBufferPointer(rebasing: chunk[0..<count]), at: outcome.received) {
                        outcome.firstMismatch = outcome.received + index
                    }
                    outcome.received += count
                } else if count == 0 {
                    outcome.sawEndOfStream = true
                } else if errno != EAGAIN && errno != EINTR {
                    outcome.error = errno
                    return outcome
                }
            }
        }
        return outcome
    }

    /// Runs `echo` for each of `streams` on its own thread and returns every outcome.
    static func echoConcurrently(_ streams: [(address: SocketAddress, total: Int)], seed: UInt64,
                                 readDelayMilliseconds: Int = 0, seconds: Double = 60) -> [EchoOutcome] {
        let results = ResultBox(count: streams.count)
        let threads = streams.enumerated().map { index, stream in
            TestThread {
                let outcome = echo(to: stream.address, total: stream.total, seed: seed &+ UInt64(index),
                                   readDelayMilliseconds: readDelayMilliseconds, seconds: seconds)
                results.set(index, outcome)
            }
        }
        for thread in threads { thread.join() }
        return results.all
    }
}

/// Outcomes written by client threads.
private final class ResultBox: @unchecked Sendable {
    // Each thread writes its own slot under the lock; read after every join.
    private var outcomes: [EchoOutcome]
    private let lock = PthreadLock()

    init(count: Int) { outcomes = Array(repeating: EchoOutcome(), count: count) }

    func set(_ index: Int, _ outcome: EchoOutcome) { lock.locked { outcomes[index] = outcome } }

    var all: [EchoOutcome] { lock.locked { outcomes } }
}
