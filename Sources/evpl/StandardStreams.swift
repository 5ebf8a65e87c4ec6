#if canImport(Glibc)
import Glibc
#endif

/// Makes the command safe to start with its standard streams closed or
/// led into a pipe nobody reads any more.
enum StandardStreams {
    /// Ignores SIGPIPE, so that a write to a pipe whose reader is gone (a
    /// log line to `2> >(head -n1)`) fails with `EPIPE` instead of killing
    /// the server; and opens `/dev/null` onto each of descriptors 0, 1 and
    /// 2 that is closed, so that no socket, signalfd or eventfd made later
    /// takes one of those numbers and receives the output or the log.
    /// Call it first thing, before anything opens a descriptor.
    static func secure() {
        signal(SIGPIPE, SIG_IGN)
        for standard: Int32 in 0...2 where fcntl(standard, F_GETFD) == -1 && errno == EBADF {
            // The lowest free number: `standard` itself, as those below it are open.
            let null = open("/dev/null", O_RDWR)
            guard null >= 0 else { exit(1) }  // nowhere to say why
            if null != standard {
                dup2(null, standard)
                close(null)
            }
        }
    }
}
