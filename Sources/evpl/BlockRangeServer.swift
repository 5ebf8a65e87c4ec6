import Evpl
#if canImport(Glibc)
import Glibc
#endif

/// Serves byte ranges of a file over a stream protocol, the network and the
/// block device driven by the same loops.
///
/// Requests and answers are ``BlockRangeWire``'s; the bytes of an answer
/// are read by the block engine into pool buffers and sent as those same
/// IOVecs, with no copy.
final class BlockRangeServer: Sendable {
    let address: SocketAddress
    private let pool: EventLoopThreadPool<BlockRangeLoop?>
    private let listener: Listener

    init(file: String, engine: BlockEngine, direct: Bool, protocol evplProtocol: EvplProtocol, address: SocketAddress, threads: Int,
         timeouts: ConnectionTimeouts = .none, config: EvplConfig) throws(EvplError) {
        // Open once here so that a bad path or engine is a thrown error, not a silent thread.
        let probeLoop = try EventLoop(config: config)
        try probeLoop.openBlockDevice(file, engine: engine, direct: direct).close()
        let listener = try Listener(address: address, protocol: evplProtocol, timeouts: timeouts, logger: config.logger)
        self.listener = listener
        self.address = listener.address
        pool = try EventLoopThreadPool(count: threads, config: config) { loop, _ in
            guard let device = try? loop.openBlockDevice(file, engine: engine, direct: direct) else { return nil }
            let server = BlockRangeLoop(device: device)
            loop.attach(to: listener) { connection in server.adopt(connection) }
            return server
        } onStop: { _, server in
            server?.device.close()
        }
    }

    /// Stops accepting and lets every connection finish its answers.
    func stop() {
        listener.close()
        pool.shutdownGracefully(timeout: .seconds(5), linger: .seconds(1))
    }
}

/// One loop's device and the ranges being read on it.
///
/// Answers go out in request order, whatever order the engine completes the
/// reads in. A connection stops receiving while more than
/// ``readAheadLimit`` bytes are requested and not yet answered, so a client
/// that pipelines requests without reading the answers holds a bounded
/// amount of memory; and a client's half-close still gets every answer to
/// the requests before it.
final class BlockRangeLoop {
    static let readAheadLimit = 8 << 20

    let device: BlockDevice
    private var reading: [UInt64: BlockRangeRequest] = [:]
    private var nextTag: UInt64 = 0

    init(device: BlockDevice) {
        self.device = device
        device.handler = { [unowned self] _, completion in completed(completion) }
    }

    func adopt(_ connection: Connection) {
        let state = BlockRangeConnection()
        connection.context = state
        connection.segmenter = Segmenters.fixedLength(BlockRangeWire.requestSize)
        connection.finishesWhenInputCloses = false
        connection.handler = { [unowned self] connection, event in
            switch event {
            case .received(let request):
                serve(connection, state, BlockRangeWire.Request(decoding: request))
            case .inputClosed:
                state.inputClosed = true
                finishIfAnswered(connection, state)
            case .disconnected:
                state.dropAll()
            default:
                break
            }
        }
    }

    private func serve(_ connection: Connection, _ state: BlockRangeConnection, _ wanted: BlockRangeWire.Request) {
        if let rejection = wanted.rejection {
            let request = BlockRangeRequest(length: 0)
            state.queue.append(request)
            request.status = UInt32(rejection)
            answerReady(connection, state)
            return
        }
        // The bytes up to the end of the file, none from at or past it.
        let size = device.size
        let length = wanted.offset >= size ? 0 : Int(min(UInt64(wanted.length), size - wanted.offset))
        let request = BlockRangeRequest(length: length)
        state.queue.append(request)
        guard length > 0 else {
            request.status = 0
            answerReady(connection, state)
            return
        }
        let pool = device.loop.bufferPool
        var remaining = length
        while remaining > 0 {
            guard var iovec = try? pool.allocate() else {
                request.release()
                request.status = UInt32(ENOMEM)
                answerReady(connection, state)
                return
            }
            iovec.length = min(remaining, iovec.length)
            remaining -= iovec.length
            request.iovecs.append(iovec)
        }
        state.bytesRequested += length
        if state.bytesRequested > Self.readAheadLimit { connection.pauseReceiving() }
        request.connection = connection
        // A device request carries a bounded number of buffers: a longer
        // range is read in pieces, answered together once all are in.
        var first = 0
        var offset = wanted.offset
        while first < request.iovecs.count {
            let piece = Array(request.iovecs[first..<min(first + BlockDevice.maxIOVecsPerRequest, request.iovecs.count)])
            nextTag &+= 1
            reading[nextTag] = request
            request.readsPending += 1
            device.read(into: piece, at: offset, tag: nextTag)
            first += piece.count
            offset += UInt64(piece.reduce(0) { $0 + $1.length })
        }
    }

    private func completed(_ completion: BlockCompletion) {
        guard let request = reading.removeValue(forKey: completion.tag) else { return }
        request.readsPending -= 1
        if let error = completion.error, request.failure == nil { request.failure = Self.status(of: error) }
        guard request.readsPending == 0, let connection = request.connection else { return }
        request.connection = nil
        let state = unsafeDowncast(connection.context!, to: BlockRangeConnection.self)
        state.bytesRequested -= request.length
        if let failure = request.failure {
            request.release()
            request.status = failure
        } else {
            request.status = 0
            request.bytes = request.length
        }
        guard !connection.isClosed else {
            request.release()
            return
        }
        answerReady(connection, state)
        if state.bytesRequested <= Self.readAheadLimit { connection.resumeReceiving() }
    }

    /// The status answering a failed read: the kernel's errno, `EINVAL`
    /// for a read the device refused as invalid without one, `EIO` otherwise.
    private static func status(of error: EvplError) -> UInt32 {
        if error.errno != 0 { return UInt32(error.errno) }
        return UInt32(error.code == .invalidArgument ? EINVAL : EIO)
    }

    /// Sends every answer at the head of the queue whose read has completed.
    private func answerReady(_ connection: Connection, _ state: BlockRangeConnection) {
        while let request = state.queue.first, let status = request.status {
            state.queue.removeFirst()
            BlockRangeWire.withAnswerHeader(status: status, count: request.bytes) { try? connection.send(copying: $0) }
            if !request.iovecs.isEmpty {
                let iovecs = request.iovecs
                request.iovecs = []
                try? connection.send(taking: iovecs)
            }
        }
        finishIfAnswered(connection, state)
    }

    private func finishIfAnswered(_ connection: Connection, _ state: BlockRangeConnection) {
        if state.inputClosed && state.queue.isEmpty { connection.finish() }
    }
}

/// Per-connection state: the requests not yet answered, in order.
final class BlockRangeConnection {
    var queue: [BlockRangeRequest] = []
    var bytesRequested = 0
    var inputClosed = false

    /// Lets go of every buffer when the connection ends early.
    func dropAll() {
        for request in queue where request.connection == nil { request.release() }
        queue.removeAll()
    }
}

/// One requested range: its buffers while the reads run, then its answer.
final class BlockRangeRequest {
    /// The bytes to read: the range asked for, cut at the end of the file.
    let length: Int
    var iovecs: [IOVec] = []
    /// Device reads not yet complete (one per ``BlockDevice/maxIOVecsPerRequest`` buffers).
    var readsPending = 0
    /// The status of the first read that failed.
    var failure: UInt32?
    /// 0 or an errno once every read completed; `nil` while they run.
    var status: UInt32?
    var bytes = 0
    /// The connection, while reads are in flight.
    var connection: Connection?

    init(length: Int) { self.length = length }

    func release() {
        for iovec in iovecs { iovec.release() }
        iovecs = []
    }
}
