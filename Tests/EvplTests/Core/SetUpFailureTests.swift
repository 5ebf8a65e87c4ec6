@testable import Evpl
import Glibc
import Testing

/// Every error a set-up call can throw reaches the caller as a typed
/// ``EvplError`` naming the call, with nothing half-built left behind: the
/// failing system calls come from a ``FaultPlan`` (descriptors, memory,
/// threads and rings running out), the bad arguments from the caller.
@Suite("Set-up failures")
struct SetUpFailureTests {
    static let loopback = try! SocketAddress(host: "127.0.0.1", port: 0)
    static let hasURing = Probe.unavailableReason(for: .ioUring) == nil

    /// Runs `body` with the `occurrence`th `call` failing with `code`, and
    /// expects it to throw that errno from `operation`.
    private func expectFails(_ call: SystemCall, with code: Int32, at occurrence: Int = 1, in operation: String,
                             sourceLocation: SourceLocation = #_sourceLocation, _ body: () throws -> Void) {
        let plan = FaultPlan()
        plan.inject(.error(code), on: call, at: occurrence)
        do {
            try plan.installed { try body() }
            Issue.record("\(call) #\(occurrence) failing with errno \(code) threw nothing", sourceLocation: sourceLocation)
        } catch let error as EvplError {
            #expect(error.errno == code && error.operation == operation, "\(error)", sourceLocation: sourceLocation)
        } catch {
            Issue.record("untyped \(error)", sourceLocation: sourceLocation)
        }
        #expect(plan.faultsInjected(into: call) == 1, sourceLocation: sourceLocation)
    }

    /// Runs `body` and expects an error with `code`.
    private func expectThrows(_ code: EvplError.Code, sourceLocation: SourceLocation = #_sourceLocation, _ body: () throws -> Void) {
        #expect(sourceLocation: sourceLocation) { try body() } throws: { ($0 as? EvplError)?.code == code }
    }

    @Test("a loop that cannot get its descriptors, memory or CPUs throws, and the next one works")
    func loopSetUp() throws {
        expectFails(.eventfd, with: EMFILE, in: "eventfd") { _ = try EventLoop(config: EvplConfig()) }
        expectFails(.epollCreate, with: ENFILE, in: "epoll_create1") { _ = try EventLoop(config: EvplConfig()) }
        let loop = try makeLoop()
        expectFails(.mmap, with: ENOMEM, in: "mmap") { _ = try loop.bufferPool.allocate() }
        let iovec = try loop.bufferPool.allocate()
        iovec.release()
        expectFails(.eventfd, with: EMFILE, in: "eventfd") { _ = try loop.addDoorbell { _ in } }
        expectFails(.signalfd, with: EMFILE, in: "signalfd") { _ = try TerminationSignals() }
        // CPU 1000 is in range of a cpu_set_t but not on this machine: the test thread keeps its own.
        expectThrows(.invalidArgument) { _ = try EventLoop(config: EvplConfig(), loopConfig: LoopConfig(cpuAffinity: [1000])) }
        expectThrows(.invalidArgument) { _ = try EventLoop(config: EvplConfig(), loopConfig: LoopConfig(cpuAffinity: [-1])) }
        var config = EvplConfig()
        config.bufferSize = 1
        expectThrows(.invalidArgument) { _ = try EventLoop(config: config) }
        expectNoLeaks(loop)
    }

    @Test("a wait for termination signals whose poll fails returns at once, reporting no signal")
    func terminationWaitPollFailure() throws {
        let signals = try TerminationSignals()
        let plan = FaultPlan()
        plan.inject(.error(ENOMEM), on: .poll, at: 1)
        let start = MonotonicClock.nanoseconds()
        let arrived = plan.installed { signals.wait(timeoutMilliseconds: 60_000) }
        #expect(!arrived)
        #expect(plan.faultsInjected(into: .poll) == 1)
        // Not the minute it would have waited for a signal.
        #expect(MonotonicClock.nanoseconds() - start < 30_000_000_000)
    }

    @Test("a thread pool whose second thread or loop cannot start stops the first and throws")
    func threadPoolSetUp() {
        expectFails(.threadCreate, with: EAGAIN, at: 2, in: "pthread_create") {
            _ = try EventLoopThreadPool(count: 2, config: EvplConfig()) { _, _ in () }
        }
        expectThrows(.invalidArgument) {
            _ = try EventLoopThreadPool(count: 2, config: EvplConfig(), loopConfig: { LoopConfig(cpuAffinity: $0 == 1 ? [1000] : nil) }) { _, _ in () }
        }
        expectThrows(.invalidArgument) { _ = try EventLoopThreadPool(count: 0, config: EvplConfig()) { _, _ in () } }
    }

    @Test("a listener that cannot get a socket, address or event descriptor throws; the wrong protocol is refused")
    func listenerSetUp() {
        expectFails(.socket, with: EMFILE, in: "listen") { _ = try Listener(address: Self.loopback) }
        expectFails(.bind, with: EADDRINUSE, in: "bind") { _ = try Listener(address: Self.loopback) }
        expectFails(.listen, with: EADDRINUSE, in: "listen") { _ = try Listener(address: Self.loopback) }
        expectFails(.eventfd, with: ENFILE, in: "eventfd") { _ = try Listener(address: Self.loopback) }
        expectThrows(.invalidArgument) { _ = try Listener(address: Self.loopback, protocol: .udp) }
        expectThrows(.unavailable) { _ = try Listener(address: Self.loopback, protocol: EvplProtocol(.tcp, backend: .rdmacm)) }
    }

    @Test("a connection or endpoint the loop cannot watch throws and closes its socket")
    func registrationFailures() throws {
        let loop = try makeLoop()
        let listener = try Listener(address: Self.loopback)
        defer { listener.close() }
        let socketTCP = EvplProtocol(.tcp, backend: .socket)
        expectFails(.epollCtl, with: ENOMEM, in: "epoll_ctl add") { _ = try loop.connect(to: listener.address, protocol: socketTCP) { _, _ in } }
        expectFails(.socket, with: EMFILE, in: "connect") { _ = try loop.connect(to: listener.address, protocol: socketTCP) { _, _ in } }
        expectFails(.epollCtl, with: ENOSPC, in: "epoll_ctl add") {
            _ = try loop.bindDatagram(Self.loopback, protocol: EvplProtocol(.udp, backend: .socket)) { _, _, _ in }
        }
        expectFails(.bind, with: EADDRINUSE, in: "bind") { _ = try loop.bindDatagram(Self.loopback) { _, _, _ in } }
        expectThrows(.invalidArgument) { _ = try loop.bindDatagram(Self.loopback, protocol: .tcp) { _, _, _ in } }

        var pair: [Int32] = [0, 0]
        try #require(socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0, &pair) == 0)
        defer { close(pair[0]); close(pair[1]) }
        expectFails(.epollCtl, with: ENOMEM, in: "epoll_ctl add") { _ = try loop.watch(fd: pair[0], interest: .readable) { _, _ in } }
        let watch = try loop.watch(fd: pair[0], interest: .readable) { _, _ in }
        expectFails(.epollCtl, with: ENOMEM, in: "epoll_ctl mod") { try watch.setInterest([.readable, .writable]) }
        watch.remove()
        expectNoLeaks(loop)
    }

    @Test("a bound UDP port cannot be bound twice: addressInUse")
    func datagramAddressInUse() throws {
        let loop = try makeLoop()
        let first = try loop.bindDatagram(Self.loopback) { _, _, _ in }
        expectThrows(.addressInUse) { _ = try loop.bindDatagram(first.localAddress) { _, _, _ in } }
        first.close()
    }

    @Test("a ring the kernel will not set up is an error for the loop's first io_uring user, and the next one works",
          .enabled(if: hasURing))
    func uringSetUp() throws {
        let loop = try makeLoop()
        let listener = try Listener(address: Self.loopback)
        defer { listener.close() }
        let uringTCP = EvplProtocol(.tcp, backend: .ioUring)
        expectFails(.uringSetup, with: ENOMEM, in: "io_uring_queue_init") { _ = try loop.connect(to: listener.address, protocol: uringTCP) { _, _ in } }
        expectFails(.uringRegisterBuffers, with: ENOMEM, in: "io_uring_register_buf_ring") {
            _ = try loop.connect(to: listener.address, protocol: uringTCP) { _, _ in }
        }
        let connection = try loop.connect(to: listener.address, protocol: uringTCP) { _, _ in }
        connection.close()
        expectNoLeaks(loop)
    }

    @Test("a listener whose io_uring acceptor cannot start accepts with poll instead", .enabled(if: hasURing))
    func acceptorFallsBack() throws {
        let loop = try makeLoop()
        let plan = FaultPlan()
        plan.inject(.error(ENOMEM), on: .uringSetup)
        var accepted = 0
        let log = CapturedLog()
        let listener = try plan.installed {
            let listener = try Listener(address: Self.loopback, protocol: EvplProtocol(.tcp, backend: .ioUring), logger: log.logger())
            loop.attach(to: listener) { connection in
                accepted += 1
                connection.close()
            }
            return listener
        }
        defer { listener.close() }
        let fd = rawConnect(to: listener.address)
        defer { close(fd) }
        try spin(loop, "the accept") { accepted == 1 }
        #expect(plan.faultsInjected(into: .uringSetup) == 1)
        #expect(log.records.contains { $0.level == .warning && $0.message.contains("accepting with poll") }, "\(log.records.map(\.message))")
    }

    @Test("block engines that cannot get their descriptors or AIO context throw, and the file stays usable")
    func blockEngineSetUp() throws {
        let loop = try makeLoop()
        let file = ScratchFile()
        expectFails(.open, with: ENFILE, in: "open") { _ = try loop.openBlockDevice(file.path, engine: .psync, create: 4096) }
        expectFails(.eventfd, with: EMFILE, in: "eventfd") { _ = try loop.openBlockDevice(file.path, engine: .psync, create: 4096) }
        expectFails(.eventfd, with: EMFILE, at: 2, in: "eventfd") { _ = try loop.openBlockDevice(file.path, engine: .psync) }
        expectFails(.ioSetup, with: EAGAIN, in: "io_setup") { _ = try loop.openBlockDevice(file.path, engine: .libaio) }
        expectFails(.eventfd, with: ENFILE, in: "eventfd") { _ = try loop.openBlockDevice(file.path, engine: .libaio) }
        // A depth over fs.aio-max-nr: the kernel's own refusal, EINVAL.
        #expect {
            _ = try loop.openBlockDevice(file.path, engine: .libaio, queueDepth: 1 << 24)
        } throws: { error in
            (error as? EvplError).map { $0.errno == EINVAL && $0.operation == "io_setup" } ?? false
        }
        try loop.openBlockDevice(file.path, engine: .libaio).close()
        expectNoLeaks(loop)
    }

    @Test("bad block arguments are invalidArgument before anything is opened; a size the filesystem cannot hold is EFBIG")
    func blockArguments() throws {
        let loop = try makeLoop()
        let file = ScratchFile()
        expectThrows(.invalidArgument) { _ = try loop.openBlockDevice(file.path, engine: .psync, create: 4096, queueDepth: 0) }
        expectThrows(.invalidArgument) { _ = try loop.openBlockDevice(file.path, engine: .psync, create: UInt64.max) }
        #expect(access(file.path, F_OK) != 0)
        do throws(EvplError) {
            _ = try loop.openBlockDevice(file.path, engine: .psync, create: UInt64(Int64.max))
            Issue.record("a file of 8 EiB was created")
        } catch {
            #expect(error.errno == EFBIG && error.operation == "ftruncate" && error.context == file.path, "\(error)")
        }
    }

    @Test("sending on a closed connection or endpoint is invalidState, and IOVecs handed over are released")
    func sendsAfterClose() throws {
        let loop = try makeLoop()
        let listener = try Listener(address: Self.loopback)
        defer { listener.close() }
        let connection = try loop.connect(to: listener.address, protocol: EvplProtocol(.tcp, backend: .socket)) { _, _ in }
        connection.close()
        expectThrows(.invalidState) { try connection.send(taking: try loop.bufferPool.allocate()) }
        expectThrows(.invalidState) { try connection.send(taking: [try loop.bufferPool.allocate(), try loop.bufferPool.allocate()]) }
        #expect(loop.bufferPool.buffersInUse == 0)

        let endpoint = try loop.bindDatagram(Self.loopback) { _, _, _ in }
        let unixAddress = try SocketAddress(unixPath: "/tmp/evpl-not-ip")
        expectThrows(.invalidAddress) { try endpoint.send(to: unixAddress, copying: UnsafeRawBufferPointer(start: nil, count: 0)) }
        endpoint.close()
        expectThrows(.invalidState) { try endpoint.send(to: Self.loopback, copying: UnsafeRawBufferPointer(start: nil, count: 0)) }
        expectNoLeaks(loop)
    }

    @Test("a host name the resolver does not know is invalidAddress naming it")
    func unknownHost() {
        do throws(EvplError) {
            _ = try SocketAddress(host: "evpl-no-such-host.invalid", port: 1)
            Issue.record("evpl-no-such-host.invalid resolved")
        } catch {
            #expect(error.code == .invalidAddress && error.context.contains("evpl-no-such-host.invalid"), "\(error)")
        }
    }
}
