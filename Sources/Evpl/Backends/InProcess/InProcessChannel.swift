/// The state two in-process stream endpoints share: one direction each
/// way, the endpoints, and the mailboxes their buffers go back to, under
/// one lock.
///
/// A direction holds the writer's pool buffers on their way to the
/// reader, each range with the reference the writer's send queue held:
/// nothing is copied, and the reader shows the bytes through borrowed
/// buffers of its own pool. At most the writer's loop's
/// ``EventLoop/inProcessWindow`` bytes wait in a direction (the in-process
/// socket buffer): past it the writer's queue keeps the rest and its send
/// watermarks apply, as on a socket.
final class InProcessChannel: Sendable {
    /// Which end of the stream.
    enum Side: Int, Sendable {
        case client = 0
        case server = 1

        var peer: Side { self == .client ? .server : .client }
    }

    /// One direction, named by the side that reads it.
    struct Direction {
        /// Ranges of the writer's buffers, oldest first, one reference each.
        var ranges: [IOVec] = []
        /// Bytes in `ranges`.
        var bytes = 0
        /// The writer sent its end of stream after the last range.
        var finished = false
        /// The writer closed abortively or failed: the reader ends with a reset.
        var reset = false
        /// The reader closed: what the writer sends now fails.
        var readerClosed = false
        /// The reader's loop has been told to look, and has not yet.
        var readerNotified = false
        /// The writer stopped at the window and waits to hear of room.
        var writerWaiting = false
    }

    struct State: @unchecked Sendable {
        // @unchecked: the ranges' buffers are only counted on their own
        // loop, and an endpoint's connection only on its loop.
        var directions = [Direction(), Direction()]
        var endpoints: [InProcessStream?] = [nil, nil]
        var lenders: [BufferReturns?] = [nil, nil]
    }

    let state = Locked(State())
}
