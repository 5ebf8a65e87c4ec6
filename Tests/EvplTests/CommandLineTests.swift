import Evpl
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// Starts the `evpl` executable built next to the test bundle; returns its
/// pid and the read end of its standard output.
private func spawnEvpl(_ arguments: [String]) throws -> (pid: pid_t, output: Int32) {
    let bundle = CommandLine.arguments[0]
    let directory = bundle.hasSuffix(".xctest") ? String(bundle[..<(bundle.lastIndex(of: "/") ?? bundle.startIndex)]) : "."
    let executable = directory + "/evpl"
    try #require(access(executable, X_OK) == 0, "no evpl executable at \(executable)")
    var pipeEnds: [Int32] = [-1, -1]
    try #require(pipe(&pipeEnds) == 0)
    var actions = posix_spawn_file_actions_t()
    posix_spawn_file_actions_init(&actions)
    defer { posix_spawn_file_actions_destroy(&actions) }
    posix_spawn_file_actions_adddup2(&actions, pipeEnds[1], 1)
    posix_spawn_file_actions_addclose(&actions, pipeEnds[0])
    let argv = ([executable] + arguments).map { strdup($0) } + [nil]
    defer { for pointer in argv { free(pointer) } }
    var pid: pid_t = 0
    let spawned = posix_spawn(&pid, executable, &actions, nil, argv, environ)
    close(pipeEnds[1])
    guard spawned == 0 else {
        close(pipeEnds[0])
        throw SpawnFailed(status: spawned)
    }
    return (pid, pipeEnds[0])
}

/// `posix_spawn` refused to start the executable.
private struct SpawnFailed: Error {
    let status: Int32
}

/// The exit status of a finished child (128 + signal when killed).
private func exitStatus(of pid: pid_t) -> Int32 {
    var status: Int32 = 0
    waitpid(pid, &status, 0)
    return (status & 0x7F) == 0 ? (status >> 8) & 0xFF : 128 + (status & 0x7F)
}

/// Reads `count` bytes from `fd`, or fewer at end of stream.
private func readExactly(_ fd: Int32, _ count: Int) -> [UInt8] {
    var bytes = [UInt8](repeating: 0, count: count)
    var done = 0
    while done < count {
        let result = bytes.withUnsafeMutableBytes { read(fd, $0.baseAddress! + done, count - done) }
        if result <= 0 { break }
        done += result
    }
    return Array(bytes[0..<done])
}

/// Runs `evpl` to completion and returns its exit status and standard output.
private func runEvpl(_ arguments: [String]) throws -> (status: Int32, output: String) {
    let (pid, outputFD) = try spawnEvpl(arguments)
    defer { close(outputFD) }
    var output: [UInt8] = []
    var chunk = [UInt8](repeating: 0, count: 4096)
    while true {
        let count = read(outputFD, &chunk, chunk.count)
        if count <= 0 { break }
        output += chunk[0..<count]
    }
    return (exitStatus(of: pid), String(decoding: output, as: UTF8.self))
}

@Suite("Command line")
struct CommandLineTests {
    @Test("evpl blk --verify over 64 MiB of random writes passes", arguments: [BlockEngine.ioUring, .libaio, .psync].filter { $0.unavailableReason == nil })
    func blockVerify(engine: BlockEngine) throws {
        let path = "/var/tmp/evpl-cli-\(getpid())-\(UniqueName.next()).img"
        defer { unlink(path) }
        let (status, output) = try runEvpl(["blk", "--path", path, "--rw", "randwrite", "--bs", "4096", "--iodepth", "32",
                                            "--size", "\(64 << 20)", "--runtime", "0.5", "--engine", engine.rawValue, "--verify", "--json"])
        #expect(status == 0, "\(output)")
        for key in ["\"iops\":", "\"bytes_per_sec\":", "\"latency_ns\":{", "\"p50\":", "\"p999\":", "\"max\":"] {
            #expect(output.contains(key), "\(key) missing from \(output)")
        }
    }

    @Test("evpl blk reports a missing directory as one error line and exit status 1")
    func blockMissingPath() throws {
        let (status, output) = try runEvpl(["blk", "--path", "/nonexistent-\(getpid())/disk", "--size", "4096", "--runtime", "0.1"])
        #expect(status == 1)
        #expect(output.isEmpty, "errors go to stderr: \(output)")
    }

    @Test("evpl probe --json lists every entry with name, kind, available and reason")
    func probeJSON() throws {
        let (status, output) = try runEvpl(["probe", "--json"])
        #expect(status == 0)
        #expect(output.hasPrefix("[{\"name\":"))
        #expect(output.contains("\"kind\":\"block-engine\""))
        #expect(output.contains("{\"name\":\"io_uring\",\"kind\":\"backend\""))
    }

    @Test("evpl blk-serve answers a byte range with the file's bytes, a range past the end with EIO, and exits 0 on SIGTERM")
    func blockRangeServer() throws {
        let path = "/var/tmp/evpl-serve-\(getpid())-\(UniqueName.next()).img"
        defer { unlink(path) }
        let prefill = try runEvpl(["blk", "--path", path, "--rw", "write", "--size", "\(1 << 20)", "--runtime", "0.2", "--verify", "--engine", "psync"])
        try #require(prefill.status == 0, "\(prefill.output)")
        let (pid, outputFD) = try spawnEvpl(["blk-serve", "--file", path, "--port", "0"])
        defer { close(outputFD) }
        var line: [UInt8] = []
        while line.last != UInt8(ascii: "\n"), case let byte = readExactly(outputFD, 1), !byte.isEmpty { line += byte }
        let text = String(decoding: line, as: UTF8.self)
        try #require(text.hasPrefix("listening on "), "\(text)")
        let address = try SocketAddress(parsing: String(text.dropFirst("listening on ".count).dropLast()))
        let fd = rawConnect(to: address)
        try #require(fd >= 0)
        defer { close(fd) }

        func request(_ offset: UInt64, _ length: UInt32) -> (status: UInt32, bytes: [UInt8]) {
            var message: [UInt8] = []
            for shift in stride(from: 56, through: 0, by: -8) { message.append(UInt8(truncatingIfNeeded: offset >> UInt64(shift))) }
            for shift in stride(from: 24, through: 0, by: -8) { message.append(UInt8(truncatingIfNeeded: length >> UInt32(shift))) }
            _ = rawWriteAll(fd, message)
            let header = readExactly(fd, 8)
            guard header.count == 8 else { return (UInt32.max, []) }
            let status = header[0..<4].reduce(UInt32(0)) { $0 << 8 | UInt32($1) }
            let count = header[4..<8].reduce(UInt32(0)) { $0 << 8 | UInt32($1) }
            return (status, readExactly(fd, Int(count)))
        }

        let answer = request(8192, 100_000)
        #expect(answer.status == 0)
        #expect(answer.bytes.count == 100_000)
        // The pattern `evpl blk --verify` writes: one word per 8 bytes, keyed by offset.
        let expectedFirstWord = (UInt64(8192) &* 0x9E37_79B9_7F4A_7C15) ^ 0xD1B5_4A32_D192_ED03
        let firstWord = answer.bytes.prefix(8).enumerated().reduce(UInt64(0)) { $0 | UInt64($1.element) << UInt64(8 * $1.offset) }
        #expect(firstWord == expectedFirstWord)
        #expect(request((1 << 20) - 10, 100).status == UInt32(EIO))
        kill(pid, SIGTERM)
        #expect(exitStatus(of: pid) == 0)
    }
}
