import CEvplLinux
import CURing
#if canImport(Glibc)
import Glibc
#endif

/// The accept loop of an io_uring listener: a few `ACCEPT`s in flight on
/// the listening socket, each with its own address slot, and one `POLL_ADD`
/// on the listener's stop eventfd, on a small ring owned by the accept
/// thread. One `io_uring_enter` waits for all of them and returns every
/// connection accepted meanwhile.
///
/// Each accept reports its peer's address as the kernel saw it at accept
/// time (a multishot accept shares one address buffer among completions,
/// and asking `getpeername` later fails once the peer has reset).
enum URingAcceptor {
    private static let stopTag: UInt64 = UInt64(UInt32.max)
    private static let slots = 8

    /// The address slots of the accepts in flight.
    private struct Slots: ~Copyable {
        let addresses = UnsafeMutablePointer<sockaddr_storage>.allocate(capacity: URingAcceptor.slots)
        let lengths = UnsafeMutablePointer<socklen_t>.allocate(capacity: URingAcceptor.slots)
        var armed = 0

        deinit {
            addresses.deallocate()
            lengths.deallocate()
        }

        func peer(_ slot: Int) -> SocketAddress? {
            UnsafeMutableRawPointer(addresses + slot).withMemoryRebound(to: sockaddr.self, capacity: 1) {
                SocketAddress($0, length: lengths[slot])
            }
        }
    }

    /// Accepts until `stopFD` becomes readable, passing each new socket and
    /// its peer's address to `deliver`. Returns an error when the ring
    /// cannot be set up.
    static func run(listenFD: Int32, stopFD: Int32, deliver: (Int32, SocketAddress?) -> Void) throws(EvplError) {
        let ring = UnsafeMutablePointer<io_uring>.allocate(capacity: 1)
        defer { ring.deallocate() }
        ring.initialize(to: io_uring())
        var params = io_uring_params()
        params.flags = IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_CQSIZE
        params.cq_entries = 64
        let status = SystemCalls.uringSetup(16, ring, &params)
        guard status == 0 else { throw EvplError(errno: -status, operation: "io_uring_queue_init", context: "listener") }
        cevpl_uring_mapped()
        defer {
            cevpl_uring_unmapping()
            io_uring_queue_exit(ring)
        }

        var slots = Slots()
        for slot in 0..<Self.slots { armAccept(ring, listenFD, slot: slot, slots: &slots) }
        let poll = io_uring_get_sqe(ring)!
        io_uring_prep_poll_add(poll, stopFD, UInt32(POLLIN))
        poll.pointee.user_data = stopTag

        handleCompletions(ring) { tag, result in
            if tag == stopTag {
                stopAccepting(ring, listenFD, slots: &slots)
                return false
            }
            let slot = Int(tag)
            slots.armed -= 1
            if result >= 0 {
                deliver(result, slots.peer(slot))
            } else if result == -EMFILE || result == -ENFILE || result == -ENOBUFS || result == -ENOMEM {
                // Out of descriptors: leave the rest in the backlog briefly.
                usleep(10_000)
            }
            armAccept(ring, listenFD, slot: slot, slots: &slots)
            return true
        }
    }

    /// Cancels the accepts and waits for their last completions: until
    /// then they hold the listening socket open, and a connect could still
    /// land in the backlog of a listener its owner has closed.
    private static func stopAccepting(_ ring: UnsafeMutablePointer<io_uring>, _ listenFD: Int32, slots: inout Slots) {
        guard slots.armed > 0, let entry = io_uring_get_sqe(ring) else { return }
        io_uring_prep_cancel_fd(entry, listenFD, IORING_ASYNC_CANCEL_ALL)
        entry.pointee.user_data = stopTag - 1
        handleCompletions(ring) { tag, result in
            guard tag < UInt64(Self.slots) else { return slots.armed > 0 }
            slots.armed -= 1
            if result >= 0 { SystemCalls.close(result) }
            return slots.armed > 0
        }
    }

    /// Submits and waits, passing each completion's tag and result to
    /// `body` until it returns false (or the ring fails).
    private static func handleCompletions(_ ring: UnsafeMutablePointer<io_uring>, _ body: (UInt64, Int32) -> Bool) {
        var completion: UnsafeMutablePointer<io_uring_cqe>?
        while true {
            let waited = io_uring_submit_and_wait(ring, 1)
            if waited < 0 && waited != -EINTR { return }
            while io_uring_peek_cqe(ring, &completion) == 0, let cqe = completion {
                let tag = cqe.pointee.user_data
                let result = cqe.pointee.res
                io_uring_cqe_seen(ring, cqe)
                if !body(tag, result) { return }
            }
        }
    }

    private static func armAccept(_ ring: UnsafeMutablePointer<io_uring>, _ listenFD: Int32, slot: Int, slots: inout Slots) {
        guard let entry = io_uring_get_sqe(ring) else { return }
        slots.lengths[slot] = socklen_t(MemoryLayout<sockaddr_storage>.size)
        UnsafeMutableRawPointer(slots.addresses + slot).withMemoryRebound(to: sockaddr.self, capacity: 1) { address in
            io_uring_prep_accept(entry, listenFD, address, slots.lengths + slot, Int32(SOCK_CLOEXEC.rawValue))
        }
        entry.pointee.user_data = UInt64(slot)
        slots.armed += 1
    }
}
