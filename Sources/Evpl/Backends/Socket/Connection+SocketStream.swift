import CEvplLinux
#if canImport(Glibc)
import Glibc
#endif

/// The socket backend's stream path: epoll readiness drives a connection's
/// reads and writes, which are plain `recv` into pool buffers and one
/// gathered `sendmsg` of its send queue (see ``StreamTransport`` for the
/// contract it keeps).
extension Connection {
    /// What the loop's epoll set watches for a stream socket, edge-triggered.
    static let pollEvents = UInt32(EPOLLIN.rawValue | EPOLLOUT.rawValue | EPOLLRDHUP.rawValue | EPOLLET.rawValue)
    /// Reads of one connection per loop iteration before the others get a turn.
    static let readBurst = 16

    /// Readiness of the socket: the end of a connect, room to write, data
    /// or a hang-up to read.
    func handleReadiness(_ events: UInt32) {
        if events & UInt32(EPOLLRDHUP.rawValue | EPOLLHUP.rawValue | EPOLLERR.rawValue) != 0 {
            peerHungUp = true
            if endStreamWaitingForMemory() { return }
        }
        if state == .connecting {
            connectCompleted(errno: SocketOps.pendingError(of: fd))
            return
        }
        if events & UInt32(EPOLLOUT.rawValue) != 0 && !sendQueue.isEmpty {
            flush()
        }
        let hangup = UInt32(EPOLLRDHUP.rawValue | EPOLLHUP.rawValue | EPOLLERR.rawValue)
        if events & (UInt32(EPOLLIN.rawValue) | hangup) != 0 {
            readAvailable(drain: events & hangup != 0)
        }
    }

    /// Reads until the socket is drained or the burst limit is reached, in
    /// which case the rest is read next iteration so other sources get a turn.
    /// A short read ends it, saving the `EAGAIN` read, unless `drain` says the
    /// peer hung up: then the end of stream must be read now, as no further
    /// edge will announce it.
    func readAvailable(drain: Bool = false) {
        let drain = drain || peerHungUp
        readPending = false
        resumeDelivery()
        var reads = 0
        while mayReceive {
            if reads == Self.readBurst {
                scheduleReadPass()
                return
            }
            reads += 1
            let space: UnsafeMutableRawBufferPointer
            let queue = wireReceiveQueue
            do {
                space = try queue.writableSpace()
            } catch {
                if error.code == .resourceExhausted {
                    // The data waits in the kernel until the pool has room.
                    loop.waitForMemory(self)
                    _ = endStreamWaitingForMemory()
                } else {
                    tearDown(error: error)
                }
                return
            }
            let result = SystemCalls.receive(fd, space.baseAddress, space.count)
            if result > 0 {
                noteActivity()
                queue.commit(result)
                wireReceived()
                if result < space.count && !drain { return }
            } else if result == 0 {
                peerFinished()
                return
            } else {
                let code = Glibc.errno
                if code == EAGAIN { return }
                if code == EINTR { continue }
                tearDown(error: EvplError(errno: code, operation: "receive", context: "\(remoteAddress)"))
                return
            }
        }
    }

    /// A connection that waits for pool memory, and only for that, whose
    /// peer has ended its stream with nothing left unread will never need
    /// the memory: its end of stream is delivered now (a message it holds
    /// part of ends in a framing error). Otherwise, at a spent budget where
    /// every connection holds part of a message, none would read its end of
    /// stream and none would give its memory back. Returns whether it ended.
    private func endStreamWaitingForMemory() -> Bool {
        guard peerHungUp, receivePauses == .memory, isOpen, !inputClosed, SystemCalls.peekEndOfStream(fd) else { return false }
        receivePauses.remove(.memory)
        peerFinished()
        return true
    }

    /// Writes the send queue with one gathered `sendmsg`, as much as the
    /// socket takes.
    @inline(__always)
    func writeQueued() {
        let before = sendQueue.count
        guard before > 0 else { return }
        let result = sendQueue.flush(fd: fd, scratch: loop.iovecScratch)
        if result.error != 0 {
            tearDown(error: EvplError(errno: result.error, operation: "send", context: "\(remoteAddress)"))
            return
        }
        if result.written > 0 {
            noteActivity()
            reportProgress(queuedBefore: before)
        }
    }
}
