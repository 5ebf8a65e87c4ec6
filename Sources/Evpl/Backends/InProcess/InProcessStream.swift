#if canImport(Glibc)
import Glibc
#endif

/// One end of an in-process stream: the in-process backend of a
/// ``Connection`` (see ``StreamTransport`` for the contract it keeps).
///
/// Sending moves the ranges of the send queue into the channel, references
/// and all; receiving swaps the channel's ranges out under the lock and
/// queues each as a borrowed buffer of this loop's pool. Nothing is
/// copied and no system call is made: the peer's loop hears through its
/// remote queue, which writes its eventfd only when that loop sleeps.
final class InProcessStream: @unchecked Sendable {
    // @unchecked: everything but `channel` is touched only on the loop the
    // endpoint is bound to; other loops only hand it to that loop.
    let channel: InProcessChannel
    let side: InProcessChannel.Side
    /// The address the endpoint reports as its own.
    let localAddress: SocketAddress
    @exclusivity(unchecked) private(set) var connection: Connection?
    private(set) var remote: EventLoopRemote?
    /// Ranges swapped out of the channel, then queued or given back.
    @exclusivity(unchecked) private var arrivals: [IOVec] = []

    init(channel: InProcessChannel, side: InProcessChannel.Side, localAddress: SocketAddress) {
        self.channel = channel
        self.side = side
        self.localAddress = localAddress
    }

    /// Makes `connection`, on its loop's thread, the endpoint's owner: from
    /// now on the peer's bytes and ends reach it.
    func bind(_ connection: Connection) {
        let loop = connection.loop
        self.connection = connection
        remote = loop.remote
        arrivals.reserveCapacity(16)
        channel.state.withLock { state in
            state.endpoints[side.rawValue] = self
            state.lenders[side.rawValue] = loop.bufferReturns
        }
    }

    /// Tells `endpoint`'s loop to look at it.
    private static func notify(_ endpoint: InProcessStream?) {
        guard let endpoint, let remote = endpoint.remote else { return }
        remote.enqueue(.inProcessReady(endpoint))
    }

    // MARK: Receiving

    /// Takes what the peer sent, unless receiving is paused (it then waits
    /// in the channel), and reports the peer's end of stream or reset.
    func receive() {
        guard let connection, connection.isOpen else { return }
        let mayReceive = connection.mayReceive
        let reader = side.rawValue
        var ended = false
        var reset = false
        var writer: InProcessStream?
        var lender: BufferReturns?
        channel.state.withLock { state in
            state.directions[reader].readerNotified = false
            if mayReceive && !state.directions[reader].ranges.isEmpty {
                swap(&state.directions[reader].ranges, &arrivals)
                state.directions[reader].bytes = 0
                if state.directions[reader].writerWaiting {
                    state.directions[reader].writerWaiting = false
                    writer = state.endpoints[side.peer.rawValue]
                }
            }
            ended = state.directions[reader].finished && state.directions[reader].ranges.isEmpty
            reset = state.directions[reader].reset
            lender = state.lenders[side.peer.rawValue]
        }
        Self.notify(writer)
        if !arrivals.isEmpty, let lender {
            let pool = connection.loop.bufferPool
            let queue = connection.wireReceiveQueue
            for index in arrivals.indices {
                let range = arrivals[index]
                queue.append(IOVec(buffer: pool.borrow(range.buffer, from: lender), offset: range.offset, length: range.length))
            }
            arrivals.removeAllKeepingCapacity()
            connection.noteActivity()
            connection.wireReceived()
        }
        if reset {
            connection.tearDown(error: EvplError(errno: ECONNRESET, operation: "receive", context: "\(connection.remoteAddress)"))
        } else if ended && connection.mayReceive {
            connection.peerFinished()
        }
    }

    /// The peer's loop said there is something to see: bytes, an end, a
    /// reset, or room to send again.
    func peerActed() {
        guard let connection else { return }
        receive()
        if connection.isOpen && !connection.sendQueue.isEmpty { connection.flush() }
    }

    // MARK: Sending

    /// Moves what the send queue holds into the channel, up to the window.
    func transmit() {
        guard let connection else { return }
        let before = connection.sendQueue.count
        guard before > 0 else { return }
        let target = side.peer.rawValue
        let window = connection.loop.inProcessWindow
        var moved = 0
        var ranges = 0
        var readerClosed = false
        var reader: InProcessStream?
        channel.state.withLock { state in
            guard !state.directions[target].readerClosed else {
                readerClosed = true
                return
            }
            let room = window - state.directions[target].bytes
            if room > 0 {
                let rangesBefore = state.directions[target].ranges.count
                moved = connection.sendQueue.transfer(upTo: room, into: &state.directions[target].ranges)
                ranges = state.directions[target].ranges.count - rangesBefore
                state.directions[target].bytes += moved
            }
            if moved < before { state.directions[target].writerWaiting = true }
            if moved > 0 && !state.directions[target].readerNotified {
                state.directions[target].readerNotified = true
                reader = state.endpoints[target]
            }
        }
        if readerClosed {
            connection.tearDown(error: EvplError(errno: ECONNRESET, operation: "send", context: "\(connection.remoteAddress)"))
            return
        }
        Self.notify(reader)
        guard moved > 0 else { return }
        connection.loop.bufferPool.buffersLentToLoops += ranges
        connection.noteActivity()
        connection.reportProgress(queuedBefore: before)
    }

    /// Sends the end of stream after everything moved so far.
    func sendEndOfStream() {
        let target = side.peer.rawValue
        var reader: InProcessStream?
        channel.state.withLock { state in
            state.directions[target].finished = true
            if !state.directions[target].readerNotified {
                state.directions[target].readerNotified = true
                reader = state.endpoints[target]
            }
        }
        Self.notify(reader)
    }

    // MARK: Closing

    /// Leaves the channel as the connection closes: the peer sees a reset
    /// unless this end had sent its end of stream (or it closes abortively),
    /// and bytes the peer sent that were never taken go back to its loop.
    func close(abortive: Bool) {
        guard connection != nil else { return }
        leave(abortive: abortive)
        connection = nil
    }

    /// An endpoint no loop took (its listener closed, or the loop refused
    /// it): the connecting side sees a reset.
    func refuse() {
        leave(abortive: true)
    }

    private func leave(abortive: Bool) {
        let mine = side.rawValue
        let target = side.peer.rawValue
        var peer: InProcessStream?
        var lender: BufferReturns?
        channel.state.withLock { state in
            if abortive || !state.directions[target].finished { state.directions[target].reset = true }
            state.directions[mine].readerClosed = true
            swap(&state.directions[mine].ranges, &arrivals)
            state.directions[mine].bytes = 0
            state.endpoints[mine] = nil
            lender = state.lenders[target]
            if !state.directions[target].readerNotified {
                state.directions[target].readerNotified = true
                peer = state.endpoints[target]
            }
        }
        if let lender {
            for index in arrivals.indices { lender.giveBack(arrivals[index].buffer) }
        }
        arrivals.removeAll()
        Self.notify(peer)
    }
}
