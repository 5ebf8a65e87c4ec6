import Evpl
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// Runs the `evpl` executable built next to the test bundle and returns its
/// exit status and standard output.
private func runEvpl(_ arguments: [String]) throws -> (status: Int32, output: String) {
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
    defer { close(pipeEnds[0]) }
    try #require(spawned == 0, "posix_spawn: \(spawned)")
    var output: [UInt8] = []
    var chunk = [UInt8](repeating: 0, count: 4096)
    while true {
        let count = read(pipeEnds[0], &chunk, chunk.count)
        if count <= 0 { break }
        output += chunk[0..<count]
    }
    var status: Int32 = 0
    waitpid(pid, &status, 0)
    let exitStatus = (status & 0x7F) == 0 ? (status >> 8) & 0xFF : 128 + (status & 0x7F)
    return (exitStatus, String(decoding: output, as: UTF8.self))
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
}
