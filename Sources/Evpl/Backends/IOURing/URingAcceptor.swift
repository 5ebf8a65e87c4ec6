import CEvplLinux
import CURing
#if canImport(Glibc)
import Glibc
#endif

/// The accept loop of an io_uring listener: one multishot `ACCEPT` on the
/// listening socket and one `POLL_ADD` on the listener's stop eventfd, on a
/// small ring owned by the accept thread. One `io_uring_enter` waits for
/// both and returns every connection accepted meanwhile.
enum URingAcceptor {
    private static let acceptTag: UInt64 = 1
    private static let stopTag: UInt64 = 2

    /// Accepts until `stopFD` becomes readable, passing each new socket to
    /// `deliver`. Returns an error when the ring cannot be set up.
    static func run(listenFD: Int32, stopFD: Int32, deliver: (Int32) -> Void) throws(EvplError) {
        let ring = UnsafeMutablePointer<io_uring>.allocate(capacity: 1)
        defer { ring.deallocate() }
        ring.initialize(to: io_uring())
        var params = io_uring_params()
        params.flags = IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_CQSIZE
        params.cq_entries = 1024
        let status = io_uring_queue_init_params(8, ring, &params)
        guard status == 0 else { throw EvplError(errno: -status, operation: "io_uring_queue_init", context: "listener") }
        defer { io_uring_queue_exit(ring) }

        armAccept(ring, listenFD)
        let poll = io_uring_get_sqe(ring)!
        io_uring_prep_poll_add(poll, stopFD, UInt32(POLLIN))
        poll.pointee.user_data = stopTag

        handleCompletions(ring) { tag, result, more in
            if tag == stopTag {
                stopAccepting(ring)
                return false
            }
            if result >= 0 {
                deliver(result)
            } else if result == -EMFILE || result == -ENFILE || result == -ENOBUFS || result == -ENOMEM {
                // Out of descriptors: leave the rest in the backlog briefly.
                usleep(10_000)
            }
            if !more { armAccept(ring, listenFD) }
            return true
        }
    }

    /// Cancels the multishot accept and waits for its last completion: until
    /// then it holds the listening socket open, and a connect could still
    /// land in the backlog of a listener its owner has closed.
    private static func stopAccepting(_ ring: UnsafeMutablePointer<io_uring>) {
        guard let entry = io_uring_get_sqe(ring) else { return }
        io_uring_prep_cancel64(entry, acceptTag, 0)
        entry.pointee.user_data = 0
        handleCompletions(ring) { tag, result, more in
            if tag == acceptTag && result >= 0 { Glibc.close(result) }
            if tag == acceptTag && !more { return false }
            return !(tag == 0 && result == -ENOENT)  // nothing was armed
        }
    }

    /// Submits and waits, passing each completion's tag, result and
    /// `IORING_CQE_F_MORE` to `body` until it returns false (or the ring fails).
    private static func handleCompletions(_ ring: UnsafeMutablePointer<io_uring>, _ body: (UInt64, Int32, Bool) -> Bool) {
        var completion: UnsafeMutablePointer<io_uring_cqe>?
        while true {
            let waited = io_uring_submit_and_wait(ring, 1)
            if waited < 0 && waited != -EINTR { return }
            while io_uring_peek_cqe(ring, &completion) == 0, let cqe = completion {
                let tag = cqe.pointee.user_data
                let result = cqe.pointee.res
                let more = cqe.pointee.flags & IORING_CQE_F_MORE != 0
                io_uring_cqe_seen(ring, cqe)
                if !body(tag, result, more) { return }
            }
        }
    }

    private static func armAccept(_ ring: UnsafeMutablePointer<io_uring>, _ listenFD: Int32) {
        guard let entry = io_uring_get_sqe(ring) else { return }
        io_uring_prep_multishot_accept(entry, listenFD, nil, nil, Int32(SOCK_CLOEXEC.rawValue))
        entry.pointee.user_data = acceptTag
    }
}
