import Evpl
import Synchronization
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// A server host and a client host: two network namespaces joined by a veth
/// pair, with addresses from the benchmarking range 198.18.0.0/15. Nothing
/// else is attached to either namespace, so no test traffic leaves them.
/// Faults (drops, resets, rate limits) are injected with nftables and tc.
final class NetworkNamespacePair {
    static let serverAddress = "198.18.0.1"
    static let clientAddress = "198.18.0.2"

    /// Whether namespaces can be made here: root, with `ip`, `nft` and `tc`
    /// (`.ci/run` installs iproute2 and nftables).
    static let isAvailable: Bool = geteuid() == 0
        && ["/usr/sbin/ip", "/usr/sbin/nft", "/usr/sbin/tc"].allSatisfy { (path: String) in access(path, X_OK) == 0 }

    let server: String
    let client: String
    /// The veth end inside each namespace.
    let serverLink: String
    let clientLink: String

    init() throws {
        let id = "\(getpid() % 100_000)x\(UniqueName.next())"
        server = "evpl-s\(id)"
        client = "evpl-c\(id)"
        serverLink = "evs\(id)"
        clientLink = "evc\(id)"
        try command("ip", "netns", "add", server)
        try command("ip", "netns", "add", client)
        try command("ip", "link", "add", serverLink, "netns", server, "type", "veth", "peer", "name", clientLink, "netns", client)
        for (namespace, link, address) in [(server, serverLink, Self.serverAddress), (client, clientLink, Self.clientAddress)] {
            try command("ip", "-n", namespace, "addr", "add", "\(address)/30", "dev", link)
            try command("ip", "-n", namespace, "link", "set", link, "up")
            try command("ip", "-n", namespace, "link", "set", "lo", "up")
        }
    }

    deinit {
        // Deleting a namespace removes its end of the veth pair, and so both.
        _ = try? command("ip", "netns", "del", server)
        _ = try? command("ip", "netns", "del", client)
    }

    /// Runs `rule` in a fresh input chain of `namespace`'s nftables.
    func addInputRule(in namespace: String, _ rule: String) throws {
        try command("ip", "netns", "exec", namespace, "nft", "add table inet faults")
        try command("ip", "netns", "exec", namespace, "nft", "add chain inet faults input { type filter hook input priority 0 ; }")
        try command("ip", "netns", "exec", namespace, "nft", "add rule inet faults input \(rule)")
    }

    /// Limits what `link` in `namespace` sends to `megabits` per second.
    func limitRate(in namespace: String, link: String, megabits: Int) throws {
        try command("ip", "netns", "exec", namespace, "tc", "qdisc", "add", "dev", link, "root",
                    "tbf", "rate", "\(megabits)mbit", "burst", "32kb", "latency", "200ms")
    }

    /// Starts an echo server for `evplProtocol` on `serverAddress:port`
    /// inside the server namespace.
    func startEchoServer(_ evplProtocol: EvplProtocol, port: UInt16) throws -> ThreadedEchoServer {
        let started = Locked<Result<ThreadedEchoServer, any Error>?>(nil)
        try onThread(in: server) {
            let address = try! SocketAddress(host: Self.serverAddress, port: port)
            let result = Result { try ThreadedEchoServer([(evplProtocol, address)]) }
            started.withLock { $0 = result }
        }
        return try #require(started.withLock { $0 }).get()
    }

    /// Runs `body` on a new thread inside `namespace`; sockets it creates,
    /// and threads it starts, belong to that namespace.
    func onThread(in namespace: String, _ body: @escaping @Sendable () -> Void) throws {
        let path = "/run/netns/\(namespace)"
        let entered = Atomic<Int32>(-1)
        TestThread {
            let fd = open(path, O_RDONLY | O_CLOEXEC)
            guard fd >= 0 else { return }
            defer { close(fd) }
            let status = enterNetworkNamespace(fd)
            entered.store(status == 0 ? 0 : errno, ordering: .releasing)
            if status == 0 { body() }
        }.join()
        try #require(entered.load(ordering: .acquiring) == 0, "could not enter network namespace \(namespace) (errno \(entered.load(ordering: .acquiring)))")
    }
}

/// `setns(fd, CLONE_NEWNET)` for the calling thread only. Glibc declares
/// `setns` under `_GNU_SOURCE`, which Swift's Glibc module leaves out, so it
/// is looked up at run time.
private func enterNetworkNamespace(_ fd: Int32) -> Int32 {
    typealias SetNamespace = @convention(c) (Int32, Int32) -> Int32
    let cloneNewNet: Int32 = 0x4000_0000
    guard let symbol = dlsym(dlopen(nil, RTLD_NOW), "setns") else { return -1 }
    return unsafeBitCast(symbol, to: SetNamespace.self)(fd, cloneNewNet)
}

/// Runs a system tool and waits for it, throwing on a non-zero exit.
@discardableResult
private func command(_ arguments: String...) throws -> Int32 {
    let argv = arguments.map { strdup($0) } + [nil]
    defer { for pointer in argv { free(pointer) } }
    var pid: pid_t = 0
    let spawned = posix_spawnp(&pid, arguments[0], nil, nil, argv, environ)
    guard spawned == 0 else { throw SpawnFailed(status: spawned) }
    let status = exitStatus(of: pid)
    try #require(status == 0, "\(arguments.joined(separator: " ")) exited with \(status)")
    return status
}

/// An echo server in one namespace and independent POSIX clients in the
/// other, with faults on the path between them: every byte comes back in
/// order, or both ends see an error; never a silent truncation, a crash or
/// a hang (every wait has a deadline).
@Suite("Faults on a real network path", .enabled(if: NetworkNamespacePair.isAvailable, "needs root, ip, nft and tc"))
struct NetworkFaultTests {
    static let port: UInt16 = 7000

    /// Runs `count` echo streams of `total` bytes from the client namespace.
    private func echo(_ hosts: NetworkNamespacePair, streams count: Int, total: Int, seed: UInt64,
                      readDelayMilliseconds: Int = 0, seconds: Double = 90) throws -> [EchoOutcome] {
        let outcomes = Locked<[EchoOutcome]>([])
        try hosts.onThread(in: hosts.client) {
            let address = try! SocketAddress(host: NetworkNamespacePair.serverAddress, port: Self.port)
            let results = RawStreamClient.echoConcurrently(Array(repeating: (address: address, total: total), count: count),
                                                          seed: seed, readDelayMilliseconds: readDelayMilliseconds, seconds: seconds)
            outcomes.withLock { $0 = results }
        }
        return outcomes.withLock { $0 }
    }

    @Test("random packet drops in both directions lose nothing", arguments: StreamCase.backends)
    func randomDrops(_ backend: EvplProtocol.Backend) throws {
        let hosts = try NetworkNamespacePair()
        for namespace in [hosts.server, hosts.client] {
            try hosts.addInputRule(in: namespace, "meta l4proto tcp numgen random mod 100 < 3 drop")
        }
        let server = try hosts.startEchoServer(EvplProtocol(.tcp, backend: backend), port: Self.port)
        defer { server.stop() }
        let seed = UInt64(MonotonicClock.nanoseconds())
        let outcomes = try echo(hosts, streams: 4, total: 1 << 20, seed: seed)
        for (index, outcome) in outcomes.enumerated() {
            #expect(outcome.isComplete, "stream \(index), seed \(seed): \(outcome)")
        }
        server.awaitEnds(4)
        #expect(server.orderlyEnds.value == 4 && server.failedEnds.value == 0)
        #expect(server.sendFailures.value == 0)
    }

    @Test("a reset injected mid-stream is an error at both ends, never a short stream", arguments: StreamCase.backends)
    func injectedReset(_ backend: EvplProtocol.Backend) throws {
        let hosts = try NetworkNamespacePair()
        // Once the server has echoed 256 KiB, the client's host answers its
        // next segment with a reset (resets themselves pass).
        try hosts.addInputRule(in: hosts.client,
                               "ip saddr \(NetworkNamespacePair.serverAddress) tcp sport \(Self.port) tcp flags & rst == 0 ct reply bytes > 262144 reject with tcp reset")
        let server = try hosts.startEchoServer(EvplProtocol(.tcp, backend: backend), port: Self.port)
        defer { server.stop() }
        // A write after the reset must fail with EPIPE, not kill the test.
        signal(SIGPIPE, SIG_IGN)
        // The client learns of the reset only from the answer to its next
        // segment: it must still be writing, so it writes more than the
        // server and both kernels can hold (a peer whose every byte was
        // acknowledged waits for its echo as long as TCP lets it).
        let total = 64 << 20
        let outcome = try #require(try echo(hosts, streams: 1, total: total, seed: 11, seconds: 30).first)
        #expect(!outcome.timedOut, "\(outcome)")
        #expect(outcome.error == ECONNRESET || outcome.error == EPIPE, "the client saw no error: \(outcome)")
        #expect(outcome.firstMismatch == nil, "\(outcome)")
        #expect(outcome.received < total)
        server.awaitEnds(1)
        #expect(server.failedEnds.value == 1, "the server's connection did not end with an error")
        #expect(server.orderlyEnds.value == 0)
    }

    @Test("a rate-limited path with a slow reader delivers every byte", arguments: StreamCase.backends)
    func rateLimited(_ backend: EvplProtocol.Backend) throws {
        let hosts = try NetworkNamespacePair()
        try hosts.limitRate(in: hosts.server, link: hosts.serverLink, megabits: 40)
        try hosts.limitRate(in: hosts.client, link: hosts.clientLink, megabits: 40)
        let server = try hosts.startEchoServer(EvplProtocol(.tcp, backend: backend), port: Self.port)
        defer { server.stop() }
        let seed = UInt64(MonotonicClock.nanoseconds())
        let outcomes = try echo(hosts, streams: 4, total: 1 << 20, seed: seed, readDelayMilliseconds: 500)
        for (index, outcome) in outcomes.enumerated() {
            #expect(outcome.isComplete, "stream \(index), seed \(seed): \(outcome)")
        }
        server.awaitEnds(4)
        #expect(server.orderlyEnds.value == 4 && server.failedEnds.value == 0)
    }
}
