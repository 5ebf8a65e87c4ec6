#if EVPL_FAULT_INJECTION
@testable import Evpl
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// Streams whose system calls fail on cue (the fault plan of the system-call
/// seam): interrupted and spurious would-block calls and short counts are
/// retried without losing or reordering a byte; real failures end the
/// connection with the `errno` as a typed error and leak no buffer.
@Suite("System-call faults: sockets")
struct SocketFaultTests {
    /// A full-duplex transfer of `total` bytes each way between two
    /// connections on one loop, with `plan` installed for all of it. Each
    /// side stays at most 64 KiB ahead of what it has received, so the
    /// transfer takes many sends and receives.
    private func duplex(_ streamCase: StreamCase, total: Int = 1 << 20, plan: FaultPlan) throws -> (server: DuplexPeer, client: DuplexPeer, loop: EventLoop) {
        try plan.installed {
            let loop = try makeLoop()
            let listener = try Listener(address: streamCase.listenAddress(), protocol: streamCase.evplProtocol)
            defer { listener.close() }
            let server = DuplexPeer(total: total, lead: 64 << 10, seed: 0xFA17_0001)
            let client = DuplexPeer(total: total, lead: 64 << 10, seed: 0xFA17_0002)
            loop.attach(to: listener) { $0.handler = server.handle }
            _ = try loop.connect(to: listener.address, protocol: streamCase.evplProtocol, client.handle)
            try spin(loop, seconds: 30, "both sides to finish or fail") { server.disconnects >= 1 && client.disconnects >= 1 }
            for _ in 0..<5 { loop.runOnceWithoutBlocking() }
            return (server, client, loop)
        }
    }

    private func expectComplete(_ peers: (server: DuplexPeer, client: DuplexPeer, loop: EventLoop), total: Int = 1 << 20, sourceLocation: SourceLocation = #_sourceLocation) {
        for (name, peer) in [("server", peers.server), ("client", peers.client)] {
            #expect(peer.firstMismatch == nil, "\(name): first wrong byte at \(peer.firstMismatch ?? -1)", sourceLocation: sourceLocation)
            #expect(peer.received == total, "\(name) received \(peer.received) of \(total)", sourceLocation: sourceLocation)
            #expect(peer.disconnectError == nil, "\(name): \(String(describing: peer.disconnectError))", sourceLocation: sourceLocation)
        }
        expectNoLeaks(peers.loop, sourceLocation: sourceLocation)
    }

    /// Runs a transfer whose `occurrence`th `call` fails with `code`, and
    /// expects one side to end with that errno.
    private func expectEnds(_ streamCase: StreamCase, failing call: SystemCall, with code: Int32, at occurrence: Int,
                            sourceLocation: SourceLocation = #_sourceLocation) throws -> (server: DuplexPeer, client: DuplexPeer, loop: EventLoop) {
        let plan = FaultPlan()
        plan.inject(.error(code), on: call, at: occurrence)
        let peers = try duplex(streamCase, plan: plan)
        let errors = [peers.server.disconnectError, peers.client.disconnectError].compactMap { $0 }
        #expect(errors.contains { $0.errno == code }, "expected errno \(code), got \(errors)", sourceLocation: sourceLocation)
        #expect(plan.faultsInjected(into: call) == 1, sourceLocation: sourceLocation)
        return peers
    }

    /// The socket-backend streams: the seam's `read` and `sendmsg`.
    static let socketCases = StreamCase.allCases.filter { $0.backend == .socket && ($0.kind == .tcp4 || $0.kind == .unixPath) }
    /// The io_uring streams, where the kernel is here.
    static let uringCases = StreamCase.core.filter { $0.backend == .ioUring }

    @Test("EINTR, spurious EAGAIN and short counts on read and sendmsg lose nothing", arguments: socketCases)
    func retriedSocketCalls(_ streamCase: StreamCase) throws {
        let plan = FaultPlan()
        plan.inject(.error(EINTR), on: .read, at: 2)
        plan.inject(.error(EAGAIN), on: .read, at: 4)
        plan.inject(.shortCount(7), on: .read, at: 6, times: 40)
        plan.inject(.error(EINTR), on: .sendmsg, at: 1)
        plan.inject(.error(EAGAIN), on: .sendmsg, at: 3)
        plan.inject(.shortCount(1000), on: .sendmsg, at: 5, times: 40)
        let peers = try duplex(streamCase, plan: plan)
        expectComplete(peers)
        #expect(plan.faultsInjected(into: .read) == 42)
        #expect(plan.faultsInjected(into: .sendmsg) == 42)
    }

    /// On Linux `close` releases the descriptor whatever it reports; a
    /// retry would close a number another thread may have opened since (and
    /// trips the seam's EBADF stop). The failure changes nothing else.
    @Test("a close that reports EINTR or EIO is not retried: both ends finish, nothing leaks, and the loop serves the next connection",
          arguments: StreamCase.kernelCore)
    func failingClose(_ streamCase: StreamCase) throws {
        let plan = FaultPlan()
        plan.inject(.error(EINTR), on: .close, at: 1)
        plan.inject(.error(EIO), on: .close, at: 2)
        let peers = try duplex(streamCase, plan: plan)
        expectComplete(peers)
        #expect(plan.faultsInjected(into: .close) == 2)
        expectComplete(try duplex(streamCase, plan: FaultPlan()))
    }

    @Test("a read or sendmsg that fails for real ends the connection with that errno, and no buffer leaks",
          arguments: socketCases, [(SystemCall.read, ENOMEM), (.read, ECONNRESET), (.sendmsg, ENOBUFS), (.sendmsg, EPIPE)])
    func failingSocketCalls(_ streamCase: StreamCase, fault: (call: SystemCall, code: Int32)) throws {
        let peers = try expectEnds(streamCase, failing: fault.call, with: fault.code, at: 5)
        for peer in [peers.server, peers.client] {
            #expect(peer.firstMismatch == nil, "what arrived before the failure is the stream's start")
        }
        expectNoLeaks(peers.loop)
    }

    @Test("io_uring: interrupted receives and sends, and short counts, lose nothing", arguments: uringCases)
    func retriedURingOperations(_ streamCase: StreamCase) throws {
        let plan = FaultPlan()
        // Each multishot receive is one submission: every failed one is
        // armed again, and the fourth stays armed, taking 512 bytes at a time.
        plan.inject(.error(EINTR), on: .uringReceive, at: 1)
        plan.inject(.error(EAGAIN), on: .uringReceive, at: 2)
        plan.inject(.error(ENOBUFS), on: .uringReceive, at: 3)
        plan.inject(.shortCount(512), on: .uringReceive, at: 4, times: 2)
        plan.inject(.error(EINTR), on: .uringSend, at: 2)
        plan.inject(.error(EAGAIN), on: .uringSend, at: 4)
        plan.inject(.shortCount(999), on: .uringSend, at: 6, times: 40)
        let peers = try duplex(streamCase, plan: plan)
        expectComplete(peers)
        #expect(plan.faultsInjected(into: .uringReceive) >= 4)
        #expect(plan.faultsInjected(into: .uringSend) == 42)
    }

    @Test("io_uring: a receive or send that fails for real ends the connection with that errno, and no buffer leaks",
          arguments: uringCases, [(SystemCall.uringReceive, ECONNRESET), (.uringSend, ENOMEM), (.uringSend, EPIPE)])
    func failingURingOperations(_ streamCase: StreamCase, fault: (call: SystemCall, code: Int32)) throws {
        let peers = try expectEnds(streamCase, failing: fault.call, with: fault.code, at: fault.call == .uringReceive ? 1 : 3)
        expectNoLeaks(peers.loop)
    }

    @Test("accept failing with EMFILE, ENOMEM and ECONNABORTED is retried: the connection still arrives")
    func acceptFailures() throws {
        let plan = FaultPlan()
        plan.inject(.error(EMFILE), on: .accept, at: 1, times: 2)
        plan.inject(.error(ENOMEM), on: .accept, at: 3)
        plan.inject(.error(ECONNABORTED), on: .accept, at: 4)
        let streamCase = StreamCase(kind: .tcp4, backend: .socket)
        let peers = try duplex(streamCase, total: 64 << 10, plan: plan)
        expectComplete(peers, total: 64 << 10)
        #expect(plan.faultsInjected(into: .accept) == 4)
    }

    @Test("connect: a refused connect is a disconnected event; any other failure is a typed error")
    func connectFailures() throws {
        let plan = FaultPlan()
        plan.inject(.error(ECONNREFUSED), on: .connect, at: 1)
        plan.inject(.error(ENOMEM), on: .connect, at: 2)
        try plan.installed {
            let loop = try makeLoop()
            let address = try SocketAddress(host: "127.0.0.1", port: 9)
            let refused = EventLog()
            let tcp = EvplProtocol(.tcp, backend: .socket)
            _ = try loop.connect(to: address, protocol: tcp, refused.handle)
            try spin(loop, seconds: 5, "the refused connect's disconnect") { refused.disconnected == 1 }
            #expect(refused.disconnectError?.errno == ECONNREFUSED)
            #expect(refused.connected == 0)
            #expect {
                _ = try loop.connect(to: address, protocol: tcp) { _, _ in }
            } throws: { ($0 as? EvplError)?.errno == ENOMEM }
            expectNoLeaks(loop)
        }
    }
}

#endif
