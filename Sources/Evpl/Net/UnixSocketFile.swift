#if canImport(Glibc)
import Glibc
#endif

/// The socket file a Unix listener's bind made at its path, known by
/// device and inode.
///
/// A listener removes its path when it closes, but only while the path
/// still names the file it made: once the path was removed and another
/// listener bound there (a new instance of a server replacing an old one),
/// the old one closing must not delete the new one's socket.
struct UnixSocketFile: Sendable {
    let path: String
    let device: UInt64
    let inode: UInt64

    /// The socket file at `path` now; `nil` when there is none.
    init?(at path: String) {
        var status = stat()
        guard lstat(path, &status) == 0, status.st_mode & S_IFMT == S_IFSOCK else { return nil }
        self.path = path
        device = UInt64(status.st_dev)
        inode = UInt64(status.st_ino)
    }

    /// Removes the path if it still names this file.
    func remove() {
        guard let current = UnixSocketFile(at: path), current.device == device, current.inode == inode else { return }
        unlink(path)
    }
}
