#if canImport(Glibc)
import Glibc
#endif

/// The CPU time a process has used, for the cost of an operation beside
/// its speed: the sum of its threads' on-CPU nanoseconds
/// (`/proc/PID/task/TID/schedstat`, exact to the nanosecond where
/// `/proc/PID/stat` counts clock ticks).
enum ProcessCPU {
    /// Nanoseconds on a CPU of every thread of `pid` that is alive now, or
    /// `nil` when the process cannot be read.
    static func nanoseconds(of pid: Int32) -> UInt64? {
        let tasks = "/proc/\(pid)/task"
        guard let directory = opendir(tasks) else { return nil }
        defer { closedir(directory) }
        var total: UInt64 = 0
        while let entry = readdir(directory) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
            guard name.first?.isNumber == true, let line = firstLine(of: "\(tasks)/\(name)/schedstat"),
                  let running = line.split(separator: " ").first.flatMap({ UInt64($0) }) else { continue }
            total += running
        }
        return total
    }

    /// The process that listens on TCP `port` or on the Unix socket at
    /// `path`, found through the socket's inode in `/proc/net` and the
    /// descriptors of every process this user may read; `nil` when none is.
    static func listener(port: UInt16?, path: String?) -> Int32? {
        var inodes = Set<String>()
        if let port {
            for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
                for line in lines(of: table).dropFirst() {
                    let fields = line.split(separator: " ")
                    // local_address is ADDRESS:PORT in hex; state 0A is LISTEN; the inode is field 9.
                    guard fields.count > 9, fields[3] == "0A", let colon = fields[1].lastIndex(of: ":"),
                          UInt16(fields[1][fields[1].index(after: colon)...], radix: 16) == port else { continue }
                    inodes.insert(String(fields[9]))
                }
            }
        }
        if let path {
            for line in lines(of: "/proc/net/unix").dropFirst() {
                let fields = line.split(separator: " ")
                // Flags 00010000 is __SO_ACCEPTCON: a listening socket; the inode is field 6.
                guard fields.count > 7, fields[3] == "00010000", fields[7] == path else { continue }
                inodes.insert(String(fields[6]))
            }
        }
        guard !inodes.isEmpty, let processes = opendir("/proc") else { return nil }
        defer { closedir(processes) }
        let targets = Set(inodes.map { "socket:[\($0)]" })
        while let entry = readdir(processes) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
            guard let pid = Int32(name), pid != getpid(), let descriptors = opendir("/proc/\(pid)/fd") else { continue }
            defer { closedir(descriptors) }
            while let descriptor = readdir(descriptors) {
                let fd = withUnsafeBytes(of: descriptor.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
                var target = [CChar](repeating: 0, count: 64)
                let length = readlink("/proc/\(pid)/fd/\(fd)", &target, target.count - 1)
                guard length > 0 else { continue }
                if targets.contains(String(decoding: target.prefix(length).map { UInt8(bitPattern: $0) }, as: UTF8.self)) { return pid }
            }
        }
        return nil
    }

    private static func firstLine(of path: String) -> String? {
        lines(of: path).first.map(String.init)
    }

    private static func lines(of path: String) -> [Substring] {
        guard let file = fopen(path, "r") else { return [] }
        defer { fclose(file) }
        var text: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 65536)
        while true {
            let count = fread(&chunk, 1, chunk.count, file)
            if count <= 0 { break }
            text += chunk.prefix(count)
        }
        return String(decoding: text, as: UTF8.self).split(separator: "\n")
    }
}
