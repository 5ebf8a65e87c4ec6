import Evpl
import Testing
#if canImport(Glibc)
import Glibc
#endif

@Suite("The command line with its standard streams closed or unread")
struct StandardStreamTests {
    /// Started with standard output and error closed, the server's first
    /// descriptors would be its signalfd and listening socket: its output
    /// and log would go there (a log line written to a TCP listening
    /// socket raises SIGPIPE).
    @Test("evpl echo --log-level debug started with standard output and error closed has /dev/null there, serves an echo client and exits 0 on SIGTERM")
    func closedOutputAndError() throws {
        // With its output closed the server cannot say where it listens: a
        // Unix path says it in advance (a TCP port picked here could be
        // taken by another test's server before this one binds it).
        let path = "/tmp/evpl-closed-\(getpid())-\(UniqueName.next()).sock"
        let address = try SocketAddress(unixPath: path)
        defer { unlink(path) }
        let (pid, output) = try spawnProcess("/bin/sh", ["-c", "exec \"$0\" \"$@\" 1>&- 2>&-", try evplExecutable(),
                                                        "echo", "--protocol", "unix", "--path", path, "--threads", "2", "--log-level", "debug"])
        close(output)
        var status: Int32 = 0
        var fd: Int32 = -1
        let deadline = MonotonicClock.nanoseconds() + 10_000_000_000
        while fd < 0 && MonotonicClock.nanoseconds() < deadline {
            if waitpid(pid, &status, WNOHANG) == pid {
                Issue.record("the server exited with \((status & 0x7F) == 0 ? (status >> 8) & 0xFF : 128 + (status & 0x7F)) before serving")
                return
            }
            fd = rawConnect(to: address)
            if fd < 0 { usleep(20_000) }
        }
        try #require(fd >= 0, "the server never listened on \(path)")
        for standard in 1...2 {
            var target = [CChar](repeating: 0, count: 256)
            let length = readlink("/proc/\(pid)/fd/\(standard)", &target, target.count - 1)
            let name = length > 0 ? String(decoding: target[0..<length].map { UInt8(bitPattern: $0) }, as: UTF8.self) : "closed"
            #expect(name == "/dev/null", "descriptor \(standard) is \(name)")
        }
        setReceiveTimeout(fd, seconds: 5)
        let payload = patternBytes(from: 0, count: 1000)
        #expect(rawWriteAll(fd, payload) && readExactly(fd, payload.count) == payload)
        close(fd)
        kill(pid, SIGTERM)
        #expect(exitStatus(of: pid) == 0)
    }

    /// `evpl echo --log-level debug 2> >(head -n1)`: the reader of the log
    /// is gone after one line. The log lines after it must fail quietly.
    @Test("evpl echo --log-level debug whose standard error is a pipe nobody reads keeps serving through several log lines, and exits 0 on SIGTERM")
    func unreadStandardError() throws {
        var ends: [Int32] = [-1, -1]
        try #require(pipe(&ends) == 0)
        close(ends[0])
        defer { close(ends[1]) }
        // Two loops: two "loop ready" lines before the server listens.
        let server = try EvplServer(["echo", "--port", "0", "--threads", "2", "--log-level", "debug"], standardError: ends[1])
        // Each reset connection is one more log line.
        for _ in 0..<4 {
            let fd = rawConnect(to: server.address)
            try #require(fd >= 0)
            #expect(rawWriteAll(fd, [1, 2, 3]) && readExactly(fd, 3) == [1, 2, 3])
            var linger = Glibc.linger(l_onoff: 1, l_linger: 0)
            setsockopt(fd, SOL_SOCKET, SO_LINGER, &linger, socklen_t(MemoryLayout<Glibc.linger>.size))
            close(fd)
        }
        usleep(200_000)
        #expect(server.isRunning, "the server died")
        #expect(ServerCase(kind: .echo, transport: "tcp", backend: .socket).serves(server.address), "not serving")
        #expect(server.terminate() == 0)
    }
}
