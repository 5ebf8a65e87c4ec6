#if canImport(Glibc)
import Glibc
#endif

extension DatagramEndpoint {
    /// Datagrams the kernel dropped on arrival because this socket's receive
    /// buffer was full (the application, or the pool ceiling, did not let
    /// the loop read fast enough): the `drops` the kernel keeps for the
    /// socket in `/proc/net/udp` and `/proc/net/udp6`. Losing datagrams is
    /// UDP's semantics; this says how many. `nil` once closed, or where
    /// `/proc` is not mounted.
    ///
    /// Reads `/proc` on each call: for monitoring, not for the hot path.
    public var kernelReceiveDrops: Int? {
        loop.checkLoopThread()
        guard !isClosed else { return nil }
        var status = stat()
        guard fstat(fd, &status) == 0 else { return nil }
        let inode = String(status.st_ino)
        for table in ["/proc/net/udp", "/proc/net/udp6"] {
            if let drops = Self.drops(ofInode: inode, in: table) { return drops }
        }
        return nil
    }

    /// The thirteenth column (`drops`) of the line in `table` whose tenth
    /// (`inode`) is `inode`.
    private static func drops(ofInode inode: String, in table: String) -> Int? {
        guard let file = fopen(table, "r") else { return nil }
        defer { fclose(file) }
        var line: UnsafeMutablePointer<CChar>?
        var capacity = 0
        defer { free(line) }
        while getline(&line, &capacity, file) > 0 {
            let columns = String(cString: line!).split(whereSeparator: { $0 == " " || $0 == "\n" })
            if columns.count >= 13, columns[9] == inode, let drops = Int(columns[12]) {
                return drops
            }
        }
        return nil
    }
}
