@testable import Evpl
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// The path of the `evpl` executable built next to the test bundle.
func evplExecutable() throws -> String {
    let bundle = CommandLine.arguments[0]
    let directory = bundle.hasSuffix(".xctest") ? String(bundle[..<(bundle.lastIndex(of: "/") ?? bundle.startIndex)]) : "."
    let evpl = directory + "/evpl"
    try #require(access(evpl, X_OK) == 0, "no evpl executable at \(evpl)")
    return evpl
}

/// Starts the `evpl` executable built next to the test bundle; returns its
/// pid and the read end of its standard output. With `fileLimit`, it runs
/// under `ulimit -n fileLimit`; with `standardError`, that descriptor is
/// its standard error.
func spawnEvpl(_ arguments: [String], fileLimit: Int? = nil, standardError: Int32? = nil) throws -> (pid: pid_t, output: Int32) {
    let evpl = try evplExecutable()
    var executable = evpl
    var arguments = arguments
    if let fileLimit {
        executable = "/bin/sh"
        arguments = ["-c", "ulimit -n \(fileLimit) && exec \"$0\" \"$@\"", evpl] + arguments
    }
    return try spawnProcess(executable, arguments, standardError: standardError)
}

/// Starts `executable` with `arguments`; returns its pid and the read end
/// of its standard output. With `standardError`, that descriptor is its
/// standard error (the test's otherwise).
func spawnProcess(_ executable: String, _ arguments: [String], standardError: Int32? = nil) throws -> (pid: pid_t, output: Int32) {
    var pipeEnds: [Int32] = [-1, -1]
    try #require(pipe(&pipeEnds) == 0)
    var actions = posix_spawn_file_actions_t()
    posix_spawn_file_actions_init(&actions)
    defer { posix_spawn_file_actions_destroy(&actions) }
    posix_spawn_file_actions_adddup2(&actions, pipeEnds[1], 1)
    if let standardError { posix_spawn_file_actions_adddup2(&actions, standardError, 2) }
    posix_spawn_file_actions_addclose(&actions, pipeEnds[0])
    // Descriptors other tests have open stay here: a child under a low
    // `ulimit -n` must start with little more than its standard streams.
    markOpenDescriptorsCloseOnExec(except: pipeEnds[1])
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

/// Sets `FD_CLOEXEC` on every open descriptor above the standard streams
/// but `kept` (the sockets tests create are inheritable by default).
private func markOpenDescriptorsCloseOnExec(except kept: Int32) {
    guard let directory = opendir("/proc/self/fd") else { return }
    defer { closedir(directory) }
    let own = dirfd(directory)
    while let entry = readdir(directory) {
        let name = Probe.entryName(entry)
        guard let fd = Int32(name), fd > 2, fd != kept, fd != own else { continue }
        let flags = fcntl(fd, F_GETFD)
        if flags >= 0 { _ = fcntl(fd, F_SETFD, flags | FD_CLOEXEC) }
    }
}

/// `posix_spawn` refused to start the executable.
struct SpawnFailed: Error {
    let status: Int32
}

/// The exit status of a finished child (128 + signal when killed).
func exitStatus(of pid: pid_t) -> Int32 {
    var status: Int32 = 0
    waitpid(pid, &status, 0)
    return (status & 0x7F) == 0 ? (status >> 8) & 0xFF : 128 + (status & 0x7F)
}

/// Reads `count` bytes from `fd`, or fewer at end of stream.
func readExactly(_ fd: Int32, _ count: Int) -> [UInt8] {
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
func runEvpl(_ arguments: [String]) throws -> (status: Int32, output: String) {
    try collect(spawnEvpl(arguments))
}

/// Runs a `/bin/sh` script to completion and returns its exit status and
/// standard output (standard error stays the test's).
func runShell(_ script: String) throws -> (status: Int32, output: String) {
    try collect(spawnProcess("/bin/sh", ["-c", script]))
}

/// Reads a child's output to its end, then reaps it.
private func collect(_ child: (pid: pid_t, output: Int32)) -> (status: Int32, output: String) {
    let (pid, outputFD) = child
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


/// An `evpl` server started for a test: its pid and the address it printed.
final class EvplServer {
    let pid: pid_t
    let address: SocketAddress
    private let output: Int32
    private var exit: Int32?

    /// Starts `evpl arguments` and waits for its `listening on <address>`
    /// line; `standardError` as in ``spawnEvpl(_:fileLimit:standardError:)``.
    init(_ arguments: [String], fileLimit: Int? = nil, standardError: Int32? = nil) throws {
        let (pid, output) = try spawnEvpl(arguments, fileLimit: fileLimit, standardError: standardError)
        self.pid = pid
        self.output = output
        var line: [UInt8] = []
        while line.last != UInt8(ascii: "\n"), case let byte = readExactly(output, 1), !byte.isEmpty { line += byte }
        let text = String(decoding: line, as: UTF8.self)
        guard text.hasPrefix("listening on "), let address = try? SocketAddress(parsing: String(text.dropFirst("listening on ".count).dropLast())) else {
            kill(pid, SIGKILL)
            _ = exitStatus(of: pid)
            close(output)
            throw ServerDidNotStart(line: text)
        }
        self.address = address
    }

    deinit {
        if exit == nil { _ = terminate() }
    }

    /// Whether the process is still running (reaps it if it ended).
    var isRunning: Bool {
        guard exit == nil else { return false }
        var status: Int32 = 0
        guard waitpid(pid, &status, WNOHANG) == pid else { return true }
        exit = (status & 0x7F) == 0 ? (status >> 8) & 0xFF : 128 + (status & 0x7F)
        close(output)
        return false
    }

    /// Sends SIGTERM (if still running) and returns the exit status (128 + signal if it died).
    func terminate() -> Int32 {
        if let exit { return exit }
        if isRunning {
            kill(pid, SIGTERM)
            exit = exitStatus(of: pid)
            close(output)
        }
        return exit ?? -1
    }
}

/// A server printed something other than its `listening on` line.
struct ServerDidNotStart: Error, CustomStringConvertible {
    let line: String
    var description: String { "server did not start: \"\(line)\"" }
}
