@testable import Evpl
import Testing
#if canImport(Glibc)
import Glibc
#endif

@Suite("Loop failures are surfaced, never spun on")
struct LoopFailureTests {
    @Test("an epoll_wait that fails stops the loop once, reports the error and disconnects every connection with it")
    func epollFailureStopsTheLoop() throws {
        let loop = try makeLoop()
        let listener = try Listener(address: SocketAddress(host: "127.0.0.1", port: 0), protocol: EvplProtocol(.tcp, backend: .socket))
        let server = EventLog()
        loop.attach(to: listener) { $0.handler = server.handle }
        let client = EventLog()
        _ = try loop.connect(to: listener.address, protocol: EvplProtocol(.tcp, backend: .socket), client.handle)
        try spin(loop, "both ends connected") { server.connected == 1 && client.connected == 1 }
        var reported: [EvplError] = []
        loop.onFailure = { reported.append($0) }

        // The epoll set is replaced by something epoll_wait refuses (EINVAL).
        let null = open("/dev/null", O_RDONLY)
        try #require(null >= 0)
        try #require(dup2(null, loop.epoll.fd) == loop.epoll.fd)
        close(null)
        let remote = loop.remote
        let watchdog = Watchdog(seconds: 5) { remote.stop() }
        let iterationsBefore = loop.statistics.iterations
        loop.run()
        watchdog.standDown()

        #expect(!watchdog.fired, "run() kept going after epoll_wait failed")
        #expect(loop.failure?.errno == EINVAL, "\(String(describing: loop.failure))")
        #expect(reported.count == 1)
        #expect(loop.statistics.iterations - iterationsBefore < 10, "the loop spun \(loop.statistics.iterations - iterationsBefore) times on the error")
        #expect(server.disconnected == 1 && client.disconnected == 1)
        #expect(server.disconnectError?.errno == EINVAL && client.disconnectError?.errno == EINVAL)
        loop.runOnce()  // a failed loop does nothing, and does not block
        listener.close()
    }

    @Test("an injected failure of the loop's wait (epoll_wait, or io_uring_enter with a ring) stops the loop once with that errno and disconnects every connection; EINTR before it is only a wake-up",
          arguments: LoopWait.usable)
    func injectedWaitFailure(_ wait: LoopWait) throws {
        let loop = try makeLoop(waitingIn: wait)
        let evplProtocol = EvplProtocol(.tcp, backend: wait == .ioUring ? .ioUring : .socket)
        let listener = try Listener(address: SocketAddress(host: "127.0.0.1", port: 0), protocol: evplProtocol)
        defer { listener.close() }
        let server = EventLog()
        loop.attach(to: listener) { $0.handler = server.handle }
        let client = EventLog()
        _ = try loop.connect(to: listener.address, protocol: evplProtocol, client.handle)
        try spin(loop, "both ends connected") { server.connected == 1 && client.connected == 1 }
        var reported: [EvplError] = []
        loop.onFailure = { reported.append($0) }
        let call: SystemCall = wait == .ioUring ? .uringEnter : .epollWait
        let plan = FaultPlan()
        plan.inject(.error(EINTR), on: call, at: 1)
        plan.inject(.error(ENOMEM), on: call, at: 2)
        let remote = loop.remote
        let watchdog = Watchdog(seconds: 5) { remote.stop() }
        plan.installed { loop.run() }
        watchdog.standDown()

        #expect(!watchdog.fired, "run() kept going after the wait failed")
        #expect(plan.faultsInjected(into: call) == 2)
        #expect(loop.failure?.errno == ENOMEM, "\(String(describing: loop.failure))")
        #expect(reported.count == 1)
        #expect(server.disconnected == 1 && client.disconnected == 1)
        #expect(server.disconnectError?.errno == ENOMEM && client.disconnectError?.errno == ENOMEM)
    }

    /// The misuse the compiler cannot see: a loop smuggled to a second
    /// thread through an `@unchecked Sendable` box. It must trap with a
    /// message (release builds too), not corrupt the loop or spin.
    @Test("a loop used from a foreign thread traps at the entry point", arguments: StreamCase.backends)
    func foreignThreadTraps(_ backend: EvplProtocol.Backend) async {
        let result = await #expect(processExitsWith: .failure, observing: [\.standardErrorContent]) { [backendName = backend.rawValue as String] in
            let backend = try #require(EvplProtocol.Backend(rawValue: backendName))
            let loop = try EventLoop()
            _ = try loop.bindDatagram(SocketAddress(host: "127.0.0.1", port: 0), protocol: EvplProtocol(.udp, backend: backend)) { _, _, _ in }
            let smuggled = UncheckedBox(loop)
            TestThread { smuggled.value.runOnce() }.join()
        }
        let message = String(decoding: result?.standardErrorContent ?? [], as: UTF8.self)
        #expect(message.contains("EventLoop used off its own thread"), "stderr: \(message.suffix(400))")
    }

    /// What the thread checks call: the message must reach standard error
    /// whatever the optimization level, which a `precondition`'s does not.
    @Test("a thread-confinement violation stops the process with its whole message on standard error")
    func confinementViolationMessage() async {
        let result = await #expect(processExitsWith: .failure, observing: [\.standardErrorContent]) {
            threadConfinementViolated("Widget used off its loop's thread: reach it with loop.remote.execute")
        }
        let message = String(decoding: result?.standardErrorContent ?? [], as: UTF8.self)
        #expect(message.contains("Fatal error: Widget used off its loop's thread: reach it with loop.remote.execute\n"), "stderr: \(message.suffix(400))")
    }

    /// A descriptor closed twice is a bug that closes someone else's file
    /// the next time its number is reused: the seam stops the process.
    @Test("closing a descriptor twice, or signalling a closed eventfd, stops the process with a message instead of touching whatever file has that number now",
          arguments: [("close", "close of a descriptor that is not open"), ("signal", "eventfd write to a descriptor that is not open")])
    func descriptorMisuseStops(_ misuse: String, message expected: String) async {
        let result = await #expect(processExitsWith: .failure, observing: [\.standardErrorContent]) { [misuse] in
            let fd = open("/dev/null", O_WRONLY)
            SystemCalls.close(fd)
            if misuse == "close" { SystemCalls.close(fd) } else { SystemCalls.signalEventFD(fd) }
        }
        let message = String(decoding: result?.standardErrorContent ?? [], as: UTF8.self)
        #expect(message.contains("Fatal error: \(expected)"), "stderr: \(message.suffix(400))")
    }
}

/// Carries a non-Sendable value across threads, unchecked: only for tests
/// that show what such misuse does.
final class UncheckedBox<Value>: @unchecked Sendable {
    let value: Value
    init(_ value: Value) { self.value = value }
}
