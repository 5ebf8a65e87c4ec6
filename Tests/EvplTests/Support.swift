import Evpl
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// Every stream transport the tests cover, each with a fresh listen address.
enum StreamCase: String, CaseIterable, CustomTestStringConvertible {
    case tcp4, tcp6, unixPath, unixAbstract

    var testDescription: String { rawValue }

    var evplProtocol: EvplProtocol {
        switch self {
        case .tcp4, .tcp6: return .tcp
        case .unixPath, .unixAbstract: return .unix
        }
    }

    func listenAddress() throws -> SocketAddress {
        switch self {
        case .tcp4: return try SocketAddress(host: "127.0.0.1", port: 0)
        case .tcp6: return try SocketAddress(host: "::1", port: 0)
        case .unixPath: return try SocketAddress(unixPath: "/tmp/evpl-test-\(getpid())-\(UniqueName.next()).sock")
        case .unixAbstract: return try SocketAddress(abstractName: "evpl-test-\(getpid())-\(UniqueName.next())")
        }
    }

    /// The cases heavy scenarios run over: one IP and one Unix transport.
    static let core: [StreamCase] = [.tcp4, .unixPath]
}

enum UniqueName {
    nonisolated(unsafe) private static var counter = 0
    private static let lock = PthreadLock()
    static func next() -> Int {
        lock.locked {
            counter += 1
            return counter
        }
    }
}

final class PthreadLock: @unchecked Sendable {
    private var mutex = pthread_mutex_t()
    init() { pthread_mutex_init(&mutex, nil) }
    func locked<R>(_ body: () -> R) -> R {
        pthread_mutex_lock(&mutex)
        defer { pthread_mutex_unlock(&mutex) }
        return body()
    }
}

struct TimedOut: Error, CustomStringConvertible {
    let what: String
    var description: String { "timed out waiting for \(what)" }
}

/// Runs `loop` until `condition` holds, failing after `seconds`.
func spin(_ loop: EventLoop, seconds: Double = 30, _ what: String = "condition", until condition: () -> Bool) throws {
    let deadline = MonotonicClock.nanoseconds() + UInt64(seconds * 1e9)
    while !condition() {
        if MonotonicClock.nanoseconds() > deadline { throw TimedOut(what: what) }
        loop.runOnce()
    }
}

/// A loop with small buffers so multi-buffer paths are exercised.
func makeLoop(bufferSize: Int = 64 * 1024) throws -> EventLoop {
    var config = EvplConfig()
    config.bufferSize = bufferSize
    config.spinNanoseconds = 50_000
    return try EventLoop(config: config)
}

/// Closes everything on `loop`, lets the disconnects run, and checks that
/// no pooled buffer is still referenced.
func expectNoLeaks(_ loop: EventLoop, sourceLocation: SourceLocation = #_sourceLocation) {
    loop.closeAll()
    for _ in 0..<3 { loop.runOnceWithoutBlocking() }
    #expect(loop.bufferPool.buffersInUse == 0, "buffers still referenced at teardown", sourceLocation: sourceLocation)
}

extension EventLoop {
    /// One iteration that never sleeps: pins around `runOnce`.
    func runOnceWithoutBlocking() {
        pin()
        runOnce()
        unpin()
    }
}

/// The byte expected at `offset` of a test stream: keyed by position, so a
/// lost, duplicated or reordered byte shows up.
@inline(__always)
func patternByte(_ offset: Int) -> UInt8 {
    UInt8(truncatingIfNeeded: offset ^ (offset >> 8) ^ (offset >> 16) ^ (offset >> 24))
}

func patternBytes(from offset: Int, count: Int) -> [UInt8] {
    (0..<count).map { patternByte(offset + $0) }
}

/// Records everything a connection reports, for assertions.
final class EventLog {
    var connected = 0
    var disconnected = 0
    var disconnectError: EvplError?
    var received: [UInt8] = []
    var messages: [[UInt8]] = []
    var dataBeforeConnected = false
    var eventsAfterDisconnect = 0
    var sentBytes = 0
    var sentMessages = 0
    var sentEvents = 0
    var writable = 0

    func handle(_ connection: Connection, _ event: ConnectionEvent) {
        if disconnected > 0 { eventsAfterDisconnect += 1 }
        switch event {
        case .connected:
            connected += 1
        case .received(let bytes):
            if connected == 0 { dataBeforeConnected = true }
            let array = bytes.array
            received.append(contentsOf: array)
            messages.append(array)
        case .sent(let bytes, let messages):
            sentEvents += 1
            sentBytes += bytes
            sentMessages += messages
        case .writable:
            writable += 1
        case .disconnected(let error):
            disconnected += 1
            disconnectError = error
        }
    }
}
