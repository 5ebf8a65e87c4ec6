@testable import Evpl
import Synchronization
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// One stream scenario setting: an address kind over one backend. Every
/// stream scenario runs over each backend this machine can use, so the
/// io_uring backend passes the very suite the socket backend passes.
struct StreamCase: CustomTestStringConvertible, Sendable {
    enum AddressKind: String, CaseIterable, Sendable {
        case tcp4, tcp6, unixPath, unixAbstract, inproc

        /// The kinds that run over a kernel backend.
        static let kernel: [AddressKind] = [.tcp4, .tcp6, .unixPath, .unixAbstract]
    }

    var kind: AddressKind
    var backend: EvplProtocol.Backend

    var testDescription: String { "\(kind.rawValue)/\(backend.rawValue)" }

    var evplProtocol: EvplProtocol {
        switch kind {
        case .tcp4, .tcp6: return EvplProtocol(.tcp, backend: backend)
        case .unixPath, .unixAbstract: return EvplProtocol(.unix, backend: backend)
        case .inproc: return EvplProtocol(.inproc)
        }
    }

    func listenAddress() throws -> SocketAddress {
        switch kind {
        case .tcp4: return try SocketAddress(host: "127.0.0.1", port: 0)
        case .tcp6: return try SocketAddress(host: "::1", port: 0)
        case .unixPath: return try SocketAddress(unixPath: "/tmp/evpl-test-\(getpid())-\(UniqueName.next()).sock")
        case .unixAbstract: return try SocketAddress(abstractName: "evpl-test-\(getpid())-\(UniqueName.next())")
        case .inproc: return try SocketAddress(inProcessName: "evpl-test-\(UniqueName.next())")
        }
    }

    /// The stream backends usable here: the socket backend, and io_uring
    /// when the kernel allows it (`evpl probe` says why not otherwise).
    static let backends: [EvplProtocol.Backend] = Probe.unavailableReason(for: .ioUring) == nil ? [.socket, .ioUring] : [.socket]

    /// The in-process stream, which runs on no kernel backend.
    static let inProcess = StreamCase(kind: .inproc, backend: .auto)

    /// Every address kind over every backend, and the in-process stream.
    static let allCases: [StreamCase] = backends.flatMap { backend in AddressKind.kernel.map { StreamCase(kind: $0, backend: backend) } } + [inProcess]

    /// The cases heavy scenarios run over: one IP and one Unix transport
    /// over every backend, and the in-process stream.
    static let core: [StreamCase] = backends.flatMap { backend in [AddressKind.tcp4, .unixPath].map { StreamCase(kind: $0, backend: backend) } } + [inProcess]

    /// ``core`` without the in-process stream: for scenarios a plain
    /// POSIX socket drives, or that provoke a kernel backend's system calls.
    static let kernelCore: [StreamCase] = core.filter { $0.kind != .inproc }
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
///
/// A do-nothing periodic timer runs meanwhile, so no `runOnce` sleeps longer
/// than `wakeEveryMilliseconds`: an event that never comes ends in
/// ``TimedOut`` instead of a loop asleep in `epoll_wait` for ever.
func spin(_ loop: EventLoop, seconds: Double = 30, _ what: String = "condition", wakeEveryMilliseconds: UInt64 = 20, until condition: () -> Bool) throws {
    let deadline = MonotonicClock.nanoseconds() + UInt64(seconds * 1e9)
    let watchdog = try loop.addTimer(every: .microseconds(wakeEveryMilliseconds * 1000)) { _ in }
    defer { watchdog.cancel() }
    // The first wait was decided before the watchdog existed (see runOnceWithoutBlocking).
    loop.wakeIfSleeping()
    while !condition() {
        if MonotonicClock.nanoseconds() > deadline { throw TimedOut(what: what) }
        loop.runOnce()
    }
}

/// Runs `loop` for about `milliseconds` (at least that long), whatever happens on it.
func runLoop(_ loop: EventLoop, forMilliseconds milliseconds: UInt64) throws {
    var done = false
    let timer = try loop.addOneShotTimer(after: .microseconds(milliseconds * 1000)) { _ in done = true }
    defer { timer.cancel() }
    try spin(loop, seconds: Double(milliseconds) / 1000 + 10, "\(milliseconds) ms to pass") { done }
}

/// A loop with small buffers so multi-buffer paths are exercised.
func makeLoop(bufferSize: Int = 64 * 1024, waitingIn wait: LoopWait = .epoll, configure: (inout EvplConfig) -> Void = { _ in }) throws -> EventLoop {
    var config = EvplConfig()
    config.bufferSize = bufferSize
    config.spinNanoseconds = 50_000
    configure(&config)
    let loop = try EventLoop(config: config)
    if wait == .ioUring { _ = try loop.ioURing() }
    return loop
}

/// What an idle loop sleeps in: `epoll_wait`, or `io_uring_enter` once the
/// loop has a ring (which then watches the epoll set).
enum LoopWait: String, CaseIterable, CustomTestStringConvertible, Sendable {
    case epoll
    case ioUring

    var testDescription: String { rawValue }

    /// The waits usable here.
    static let usable: [LoopWait] = StreamCase.backends.contains(.ioUring) ? [.epoll, .ioUring] : [.epoll]
}

/// Closes everything on `loop`, lets the disconnects run, and checks that
/// no pooled buffer is still referenced.
func expectNoLeaks(_ loop: EventLoop, sourceLocation: SourceLocation = #_sourceLocation) {
    loop.closeAll()
    for _ in 0..<3 { loop.runOnceWithoutBlocking() }
    let pool = loop.bufferPool
    #expect(pool.buffersInUse - pool.buffersLentToKernel == 0, "buffers still referenced at teardown", sourceLocation: sourceLocation)
}

extension EventLoop {
    /// One iteration that never sleeps: pins around `runOnce`, and wakes the
    /// loop if its last iteration decided to sleep.
    func runOnceWithoutBlocking() {
        pin()
        wakeIfSleeping()
        runOnce()
        unpin()
    }

    /// Makes the next `runOnce` return from its poll at once, by queueing a
    /// no-op remote task whose eventfd write ends any wait. `runOnce` already
    /// skips sleeping for local work (a pin, a queued send, a due timer);
    /// this covers work the test expects from outside the loop.
    func wakeIfSleeping() {
        if !isPolling { remote.execute { _ in } }
    }
}

/// Runs one `runOnce` on a loop that decided to sleep and expects it not to:
/// a watchdog wakes the loop after 2 s so a failing check cannot hang.
func expectRunOnceDoesNotSleep(_ loop: EventLoop, _ what: String, sourceLocation: SourceLocation = #_sourceLocation) {
    let remote = loop.remote
    let watchdog = Watchdog(seconds: 2) { remote.execute { _ in } }
    let start = MonotonicClock.nanoseconds()
    loop.runOnce()
    let elapsed = MonotonicClock.nanoseconds() - start
    watchdog.standDown()
    #expect(!watchdog.fired, "runOnce slept with \(what) until the watchdog woke it", sourceLocation: sourceLocation)
    #expect(elapsed < 1_000_000_000, "runOnce took \(elapsed / 1000) us with \(what)", sourceLocation: sourceLocation)
}

/// Runs `action` on a background thread after `seconds`, unless
/// ``standDown()`` comes first: un-sticks a loop that should not be asleep,
/// so a test fails instead of hanging.
final class Watchdog: Sendable {
    private let firedCounter: AtomicCounter
    private let standDownCounter: AtomicCounter
    private let thread: TestThread

    init(seconds: Double, _ action: @escaping @Sendable () -> Void) {
        let fired = AtomicCounter()
        let standDown = AtomicCounter()
        firedCounter = fired
        standDownCounter = standDown
        thread = TestThread {
            let deadline = MonotonicClock.nanoseconds() + UInt64(seconds * 1e9)
            while standDown.value == 0 && MonotonicClock.nanoseconds() < deadline { usleep(1000) }
            if standDown.value == 0 {
                fired.increment()
                action()
            }
        }
    }

    /// Whether the action ran.
    var fired: Bool { firedCounter.value > 0 }

    /// Cancels the action if it has not run, and waits for the thread.
    func standDown() {
        standDownCounter.store(1)
        thread.join()
    }

    deinit { standDown() }
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

/// The pattern in 256-byte rows: for an offset `block + column` with `block`
/// a multiple of 256 (below 2^32), `patternByte` is row `patternByte(block)`,
/// column `column`. Row `r` is the pattern of offsets `r * 256 ..< r * 256 + 256`.
/// Lets long streams be generated and checked with `memcpy`/`memcmp` per
/// row instead of a (slow, unoptimized) loop per byte.
nonisolated(unsafe) let patternRows: UnsafeRawBufferPointer = {
    let rows = UnsafeMutableRawBufferPointer.allocate(byteCount: 256 * 256, alignment: 16)
    for offset in 0..<(256 * 256) { rows[offset] = patternByte(offset) }
    return UnsafeRawBufferPointer(rows)
}()

/// Calls `body(position, length, expected)` for each run of `count` bytes of
/// the pattern starting at stream offset `offset`, split at row boundaries.
@inline(__always)
private func forEachPatternRun(from offset: Int, count: Int, _ body: (Int, Int, UnsafeRawPointer) -> Bool) {
    precondition(offset >= 0 && offset + count <= 1 << 32, "pattern rows cover offsets below 4 GiB")
    let rows = patternRows.baseAddress.unsafelyUnwrapped
    var position = 0
    while position < count {
        let absolute = offset + position
        let column = absolute & 255
        let length = min(256 - column, count - position)
        let row = Int(patternByte(absolute & ~255))
        if !body(position, length, rows + row * 256 + column) { return }
        position += length
    }
}

/// Fills `destination` with the pattern bytes of stream offsets `offset...`.
func fillPattern(_ destination: UnsafeMutableRawBufferPointer, from offset: Int) {
    guard let base = destination.baseAddress else { return }
    forEachPatternRun(from: offset, count: destination.count) { position, length, expected in
        (base + position).copyMemory(from: expected, byteCount: length)
        return true
    }
}

/// Where `piece`, which should hold the pattern of stream offsets
/// `offset...`, first differs from it (an index into `piece`), or `nil`.
func patternMismatch(in piece: UnsafeRawBufferPointer, at offset: Int) -> Int? {
    guard let base = piece.baseAddress else { return nil }
    var mismatch: Int?
    forEachPatternRun(from: offset, count: piece.count) { position, length, expected in
        guard memcmp(base + position, expected, length) != 0 else { return true }
        mismatch = (position..<(position + length)).first { piece[$0] != patternByte(offset + $0) }
        return false
    }
    return mismatch
}

/// A small seeded generator (SplitMix64), so random-looking runs repeat exactly.
struct SeededRandom {
    private var state: UInt64

    init(seed: UInt64) { state = seed }

    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    /// A value in `range` (modulo bias is irrelevant for tests).
    mutating func next(in range: ClosedRange<Int>) -> Int {
        range.lowerBound + Int(next() % UInt64(range.count))
    }
}

/// A counter other threads can bump.
final class AtomicCounter: Sendable {
    private let storage = Atomic<Int>(0)
    init() {}
    var value: Int { storage.load(ordering: .acquiring) }
    func increment() { add(1) }
    func add(_ amount: Int) { storage.add(amount, ordering: .acquiringAndReleasing) }
    func store(_ value: Int) { storage.store(value, ordering: .releasing) }
}

/// A joinable POSIX thread (Foundation's `Thread` is not available here).
final class TestThread: Sendable {
    private final class Body {
        let work: @Sendable () -> Void
        init(_ work: @escaping @Sendable () -> Void) { self.work = work }
    }

    private let thread: pthread_t
    private let joined = Atomic<Bool>(false)

    /// Starts a thread running `work`.
    init(_ work: @escaping @Sendable () -> Void) {
        let body = Unmanaged.passRetained(Body(work))
        var thread = pthread_t()
        let status = pthread_create(&thread, nil, { argument in
            Unmanaged<Body>.fromOpaque(argument!).takeRetainedValue().work()
            return nil
        }, body.toOpaque())
        precondition(status == 0, "pthread_create failed: \(status)")
        self.thread = thread
    }

    /// Waits for the thread to end. Joining twice is harmless.
    func join() {
        guard !joined.exchange(true, ordering: .acquiringAndReleasing) else { return }
        pthread_join(thread, nil)
    }

    deinit { join() }
}

/// A plain listening socket on `address` (IPv4 or a Unix path) that the
/// library knows nothing of, and the address it is bound to.
func rawListen(_ address: SocketAddress) throws -> (fd: Int32, bound: SocketAddress) {
    let fd = socket(address.isUnix ? AF_UNIX : AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    try #require(fd >= 0)
    try #require(withRawSockAddr(address) { bind(fd, $0, $1) } == 0)
    try #require(listen(fd, 8) == 0)
    guard !address.isUnix else { return (fd, address) }
    var raw = sockaddr_in()
    var length = socklen_t(MemoryLayout<sockaddr_in>.size)
    _ = withUnsafeMutablePointer(to: &raw) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
    }
    return (fd, try SocketAddress(host: "127.0.0.1", port: UInt16(bigEndian: raw.sin_port)))
}

/// Calls `body` with `address` as a kernel `sockaddr`, for plain POSIX
/// sockets the tests drive without the library. IPv4 and Unix paths only.
func withRawSockAddr<R>(_ address: SocketAddress, _ body: (UnsafePointer<sockaddr>, socklen_t) -> R) -> R {
    let text = address.description
    if text.hasPrefix("/") {
        var raw = sockaddr_un()
        raw.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(text.utf8)
        precondition(bytes.count < MemoryLayout.size(ofValue: raw.sun_path))
        withUnsafeMutableBytes(of: &raw.sun_path) { $0.copyBytes(from: bytes) }
        return withUnsafePointer(to: &raw) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { body($0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
    }
    let colon = text.lastIndex(of: ":")!
    var raw = sockaddr_in()
    raw.sin_family = sa_family_t(AF_INET)
    raw.sin_port = address.port!.bigEndian
    precondition(inet_pton(AF_INET, String(text[..<colon]), &raw.sin_addr) == 1, "not an IPv4 address: \(text)")
    return withUnsafePointer(to: &raw) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { body($0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
    }
}

/// Opens a blocking POSIX stream socket connected to `address` (IPv4 or Unix
/// path), with Nagle off for TCP; -1 on failure.
func rawConnect(to address: SocketAddress) -> Int32 {
    let family = address.isUnix ? AF_UNIX : AF_INET
    let fd = socket(family, Int32(SOCK_STREAM.rawValue), 0)
    guard fd >= 0 else { return -1 }
    if !address.isUnix {
        var one: Int32 = 1
        setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
    }
    guard withRawSockAddr(address, { connect(fd, $0, $1) }) == 0 else {
        close(fd)
        return -1
    }
    return fd
}

/// Makes blocking reads of `fd` give up after `seconds`.
func setReceiveTimeout(_ fd: Int32, seconds: Int) {
    var timeout = timeval(tv_sec: seconds, tv_usec: 0)
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
}

/// Writes all of `bytes` to a blocking socket; false on failure.
func rawWriteAll(_ fd: Int32, _ bytes: [UInt8]) -> Bool {
    bytes.withUnsafeBytes { raw in
        var done = 0
        while done < raw.count {
            let result = write(fd, raw.baseAddress! + done, raw.count - done)
            if result < 0 && errno == EINTR { continue }
            if result <= 0 { return false }
            done += result
        }
        return true
    }
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
    var inputClosed = 0
    /// The connection, from its `connected` event on.
    var connection: Connection?

    func handle(_ connection: Connection, _ event: ConnectionEvent) {
        if disconnected > 0 { eventsAfterDisconnect += 1 }
        switch event {
        case .connected:
            connected += 1
            self.connection = connection
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
        case .inputClosed:
            inputClosed += 1
        case .disconnected(let error):
            disconnected += 1
            disconnectError = error
        }
    }
}

/// The bytes of the file at `path`.
func fileContents(_ path: String) throws -> [UInt8] {
    let file = try #require(fopen(path, "r"), "cannot read \(path)")
    defer { fclose(file) }
    var bytes: [UInt8] = []
    while case let byte = fgetc(file), byte != EOF { bytes.append(UInt8(byte)) }
    return bytes
}

/// The repository's root directory, found from this source file's path.
let repositoryRoot: String = {
    // .../Tests/EvplTests/Support/Support.swift: four components up.
    var path = Substring(#filePath)
    for _ in 0..<4 { path = path[..<(path.lastIndex(of: "/") ?? path.startIndex)] }
    return String(path)
}()

/// A file that stands in for standard error, for tests that check what
/// the library writes there (``HandlerFailures/standardErrorDescriptor``
/// points at ``descriptor``): the process's own standard error, where
/// other tests and the sanitizers report, is left alone.
final class StandardErrorCapture {
    /// The file's descriptor, open for writing until ``finish()``.
    let descriptor: Int32
    private let path = "/tmp/evpl-stderr-\(getpid())-\(UniqueName.next())"
    /// What was written, once ``finish()`` has run.
    private(set) var text = ""

    init() throws {
        descriptor = open(path, O_CREAT | O_TRUNC | O_WRONLY, 0o600)
        guard descriptor >= 0 else { throw TimedOut(what: "a file to capture standard error in (\(path))") }
    }

    /// Closes the file and returns what was written to it.
    func finish() -> String {
        close(descriptor)
        text = String(decoding: (try? fileContents(path)) ?? [], as: UTF8.self)
        unlink(path)
        return text
    }
}

/// Whether io_uring consumes provided buffers incrementally here (kernel
/// 6.12+): receives then share buffers instead of taking one each.
let uringConsumesBuffersIncrementally = Probe.entries().contains {
    $0.kind == "io_uring-feature" && $0.name == "incremental buffer consumption" && $0.available
}
