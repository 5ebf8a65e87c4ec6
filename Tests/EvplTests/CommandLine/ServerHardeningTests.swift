import Evpl
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// One server the command line offers, over one protocol and backend.
struct ServerCase: CustomTestStringConvertible, Sendable {
    enum Kind: String, Sendable { case echo, perf, blockServe }

    var kind: Kind
    var transport: String  // tcp, unix or udp
    var backend: EvplProtocol.Backend

    var testDescription: String { "\(kind.rawValue) \(transport)/\(backend.rawValue)" }

    static let all: [ServerCase] = StreamCase.backends.flatMap { backend in
        [ServerCase(kind: .echo, transport: "tcp", backend: backend), ServerCase(kind: .echo, transport: "unix", backend: backend),
         ServerCase(kind: .echo, transport: "udp", backend: backend),
         ServerCase(kind: .perf, transport: "tcp", backend: backend), ServerCase(kind: .perf, transport: "unix", backend: backend),
         ServerCase(kind: .perf, transport: "udp", backend: backend),
         ServerCase(kind: .blockServe, transport: "tcp", backend: backend), ServerCase(kind: .blockServe, transport: "unix", backend: backend)]
    }

    /// Starts the server; `file` is the file `blk-serve` serves.
    func start(file: String, extra: [String] = []) throws -> EvplServer {
        var arguments: [String]
        switch kind {
        case .echo: arguments = ["echo"]
        case .perf: arguments = ["perf", "server"]
        case .blockServe: arguments = ["blk-serve", "--file", file, "--engine", "psync"]
        }
        arguments += ["--protocol", transport, "--backend", cliName(backend)] + extra
        if transport == "unix" {
            arguments += ["--path", "/tmp/evpl-harden-\(getpid())-\(UniqueName.next()).sock"]
        } else {
            arguments += ["--port", "0"]
        }
        return try EvplServer(arguments)
    }

    /// All but the last byte of the first thing a client sends: the server
    /// waits for the rest.
    var partialFirstRequest: [UInt8] {
        switch kind {
        case .echo: return []
        case .perf: return Array("EVPLPIN".utf8)
        case .blockServe: return [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10]
        }
    }

    /// One well-formed exchange with the server; true when it answered correctly.
    func serves(_ address: SocketAddress) -> Bool {
        if transport == "udp" { return udpEcho(address) }
        let fd = rawConnect(to: address)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        setReceiveTimeout(fd, seconds: 5)
        let payload = patternBytes(from: 0, count: 64)
        switch kind {
        case .echo:
            return rawWriteAll(fd, payload) && readExactly(fd, 64) == payload
        case .perf:
            let handshake: [UInt8] = Array("EVPLPING".utf8)
            return rawWriteAll(fd, handshake + payload) && readExactly(fd, 64) == payload
        case .blockServe:
            let request: [UInt8] = [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10, 0]  // offset 0, 4096 bytes
            guard rawWriteAll(fd, request) else { return false }
            let header = readExactly(fd, 8)
            return header == [0, 0, 0, 0, 0, 0, 0x10, 0] && readExactly(fd, 4096).count == 4096
        }
    }

    private func udpEcho(_ address: SocketAddress) -> Bool {
        let fd = socket(AF_INET, Int32(SOCK_DGRAM.rawValue), 0)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        var timeout = timeval(tv_sec: 0, tv_usec: 200_000)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        let payload = patternBytes(from: 0, count: 64)
        // Datagrams may be dropped: a few tries.
        for _ in 0..<10 {
            _ = withRawSockAddr(address) { raw, length in payload.withUnsafeBytes { sendto(fd, $0.baseAddress, 64, 0, raw, length) } }
            var reply = [UInt8](repeating: 0, count: 128)
            let count = reply.withUnsafeMutableBytes { recv(fd, $0.baseAddress, 128, 0) }
            if count == 64 && Array(reply[0..<64]) == payload { return true }
        }
        return false
    }
}

/// The `--backend` spelling of the command line.
func cliName(_ backend: EvplProtocol.Backend) -> String {
    backend == .ioUring ? "io_uring" : backend.rawValue
}

/// Sends random bytes from peers that then close, half of them with a reset.
private func sprayRandomStreams(_ address: SocketAddress, connections: Int, seed: UInt64) {
    var random = SeededRandom(seed: seed)
    for _ in 0..<connections {
        let fd = rawConnect(to: address)
        guard fd >= 0 else { continue }
        let bytes = (0..<(8 + random.next(in: 0...64))).map { _ in UInt8(truncatingIfNeeded: random.next()) }
        _ = rawWriteAll(fd, bytes)
        if random.next() & 1 == 0 {
            var linger = Glibc.linger(l_onoff: 1, l_linger: 0)
            setsockopt(fd, SOL_SOCKET, SO_LINGER, &linger, socklen_t(MemoryLayout<Glibc.linger>.size))
        }
        close(fd)
    }
}

/// Sends random datagrams of 0 to 1,500 bytes, empty ones included.
private func sprayRandomDatagrams(_ address: SocketAddress, count: Int, seed: UInt64) {
    var random = SeededRandom(seed: seed)
    let fd = socket(AF_INET, Int32(SOCK_DGRAM.rawValue), 0)
    guard fd >= 0 else { return }
    defer { close(fd) }
    for index in 0..<count {
        let length = index % 10 == 0 ? 0 : random.next(in: 1...1500)
        let bytes = (0..<length).map { _ in UInt8(truncatingIfNeeded: random.next()) }
        _ = withRawSockAddr(address) { raw, size in bytes.withUnsafeBytes { sendto(fd, $0.baseAddress, length, 0, raw, size) } }
    }
}

@Suite("Servers survive their peers")
struct ServerHardeningTests {
    @Test("hundreds of connections and datagrams of random bytes leave every CLI server running and serving", arguments: ServerCase.all)
    func randomBytes(_ serverCase: ServerCase) throws {
        let scratch = try ScratchFile.sized(1 << 20)
        let server = try serverCase.start(file: scratch.path)
        let seed = UInt64(MonotonicClock.nanoseconds())
        if serverCase.transport == "udp" {
            sprayRandomDatagrams(server.address, count: 500, seed: seed)
        } else {
            sprayRandomStreams(server.address, connections: 300, seed: seed)
        }
        #expect(server.isRunning, "seed \(seed): the server died")
        #expect(serverCase.serves(server.address), "seed \(seed): no correct answer after the random bytes")
        #expect(server.terminate() == 0)
    }

    @Test("out of descriptors: 120 connections at once under ulimit -n 64, then closed, leave evpl echo serving",
          arguments: StreamCase.backends)
    func descriptorExhaustion(_ backend: EvplProtocol.Backend) throws {
        // A failing io_uring set-up freed the ring twice here (1 in 3 runs).
        for trial in 0..<3 {
            let server = try EvplServer(["echo", "--protocol", "tcp", "--backend", cliName(backend), "--port", "0"], fileLimit: 64)
            for _ in 0..<2 {
                var clients: [Int32] = []
                for _ in 0..<120 {
                    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue), 0)
                    guard fd >= 0 else { continue }
                    _ = withRawSockAddr(server.address) { connect(fd, $0, $1) }
                    clients.append(fd)
                }
                usleep(300_000)
                for fd in clients { close(fd) }
                usleep(300_000)
            }
            #expect(server.isRunning, "trial \(trial): the server died")
            #expect(ServerCase(kind: .echo, transport: "tcp", backend: backend).serves(server.address), "trial \(trial): not serving")
            #expect(server.terminate() == 0)
        }
    }

    @Test("listening on a Unix path that holds a regular file is addressInUse and leaves the file alone")
    func unixPathOverRegularFile() throws {
        let path = "/tmp/evpl-precious-\(getpid())-\(UniqueName.next()).txt"
        let contents = Array("precious data\n".utf8)
        let fd = open(path, O_CREAT | O_WRONLY | O_TRUNC, 0o644)
        try #require(fd >= 0)
        _ = rawWriteAll(fd, contents)
        close(fd)
        defer { unlink(path) }
        for backend in StreamCase.backends {
            let error = #expect(throws: EvplError.self) {
                _ = try Listener(address: SocketAddress(unixPath: path), protocol: EvplProtocol(.unix, backend: backend))
            }
            #expect(error?.code == .addressInUse, "\(String(describing: error))")
        }
        let reopened = open(path, O_RDONLY)
        try #require(reopened >= 0)
        defer { close(reopened) }
        #expect(readExactly(reopened, 100) == contents)
    }

    @Test("a socket file left by a listener that is gone is replaced; one with a live listener is not")
    func staleSocketFile() throws {
        let address = try SocketAddress(unixPath: "/tmp/evpl-stale-\(getpid())-\(UniqueName.next()).sock")
        let (fd, _) = try rawListen(address)
        // A live listener: refused.
        let error = #expect(throws: EvplError.self) { _ = try Listener(address: address, protocol: .unix) }
        #expect(error?.code == .addressInUse)
        close(fd)
        // Its socket file stays behind; nothing is bound to it any more.
        let listener = try Listener(address: address, protocol: .unix)
        listener.close()
    }

    /// A new instance of a server takes over the path of an old one still
    /// running (the path removed, then bound again): the old one exiting
    /// must leave the new one's socket where clients find it.
    @Test("a listener closing leaves its Unix path alone once another listener's socket replaced its own there", arguments: StreamCase.backends)
    func replacedSocketFileSurvives(_ backend: EvplProtocol.Backend) throws {
        let path = "/tmp/evpl-replaced-\(getpid())-\(UniqueName.next()).sock"
        let address = try SocketAddress(unixPath: path)
        defer { unlink(path) }
        let old = try Listener(address: address, protocol: EvplProtocol(.unix, backend: backend))
        try #require(unlink(path) == 0)
        let new = try Listener(address: address, protocol: EvplProtocol(.unix, backend: backend))
        defer { new.close() }
        old.close()
        var status = stat()
        #expect(lstat(path, &status) == 0 && status.st_mode & S_IFMT == S_IFSOCK, "the new listener's socket file is gone")
        let loop = try makeLoop()
        var accepted = 0
        loop.attach(to: new) { _ in accepted += 1 }
        try spin(loop, "the new listener to attach") { new.attachedLoopCount == 1 }
        let fd = rawConnect(to: address)
        #expect(fd >= 0, "connecting to the new listener: errno \(errno)")
        if fd >= 0 {
            try spin(loop, "the new listener to accept") { accepted == 1 }
            close(fd)
        }
        new.close()
        #expect(lstat(path, &status) != 0, "the new listener left its own socket file behind")
        expectNoLeaks(loop)
    }

    @Test("every accepted TCP connection reports its peer's IP address, even when the peer reset at once",
          arguments: StreamCase.backends)
    func remoteAddressAfterReset(_ backend: EvplProtocol.Backend) throws {
        let loop = try makeLoop()
        let listener = try Listener(address: SocketAddress(host: "127.0.0.1", port: 0), protocol: EvplProtocol(.tcp, backend: backend))
        var addresses: [String] = []
        loop.attach(to: listener) { connection in addresses.append("\(connection.remoteAddress)") }
        let clients = 64
        for _ in 0..<clients {
            let fd = rawConnect(to: listener.address)
            guard fd >= 0 else { continue }
            var linger = Glibc.linger(l_onoff: 1, l_linger: 0)
            setsockopt(fd, SOL_SOCKET, SO_LINGER, &linger, socklen_t(MemoryLayout<Glibc.linger>.size))
            close(fd)
        }
        try spin(loop, "\(clients) accepts") { addresses.count == clients }
        let wrong = addresses.filter { !$0.hasPrefix("127.0.0.1:") }
        #expect(wrong.isEmpty, "\(wrong.count) of \(clients) peers reported as \(Set(wrong))")
        listener.close()
        expectNoLeaks(loop)
    }
}
