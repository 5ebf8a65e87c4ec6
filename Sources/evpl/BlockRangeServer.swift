import Evpl
#if canImport(Glibc)
import Glibc
#endif

/// Serves byte ranges of a file over a stream protocol, the network and the
/// block device driven by the same loops.
///
/// A request is 12 bytes: the offset (8 bytes) and the length (4 bytes),
/// big-endian. The answer is an 8-byte header, the status (0 or an errno)
/// and the length, then the bytes: read by the block engine into pool
/// buffers and sent as those same IOVecs, with no copy.
final class BlockRangeServer: Sendable {
    static let requestSize = 12
    static let largestRange = 16 << 20

    let address: SocketAddress
    private let pool: EventLoopThreadPool<BlockRangeLoop?>
    private let listener: Listener

    init(file: String, engine: BlockEngine, direct: Bool, protocol evplProtocol: EvplProtocol, address: SocketAddress, threads: Int) throws(EvplError) {
        // Open once here so that a bad path or engine is a thrown error, not a silent thread.
        let probeLoop = try EventLoop()
        try probeLoop.openBlockDevice(file, engine: engine, direct: direct).close()
        let listener = try Listener(address: address, protocol: evplProtocol)
        self.listener = listener
        self.address = listener.address
        pool = try EventLoopThreadPool(count: threads) { loop, _ in
            guard let device = try? loop.openBlockDevice(file, engine: engine, direct: direct) else { return nil }
            let server = BlockRangeLoop(device: device)
            loop.attach(to: listener) { connection in
                connection.segmenter = Segmenters.fixedLength(Self.requestSize)
                connection.handler = { connection, event in
                    guard case .received(let request) = event else { return }
                    let offset = UInt64(request.loadBigEndianUInt32(at: 0)) << 32 | UInt64(request.loadBigEndianUInt32(at: 4))
                    server.serve(connection, offset: offset, length: Int(request.loadBigEndianUInt32(at: 8)))
                }
            }
            return server
        } onStop: { _, server in
            server?.device.close()
        }
    }

    func stop() {
        listener.close()
        pool.stop()
    }
}

/// One loop's device and the ranges being read on it.
final class BlockRangeLoop {
    let device: BlockDevice
    private var pending: [UInt64: (connection: Connection, iovecs: [IOVec])] = [:]
    private var nextTag: UInt64 = 0

    init(device: BlockDevice) {
        self.device = device
        device.handler = { [unowned self] _, completion in completed(completion) }
    }

    func serve(_ connection: Connection, offset: UInt64, length: Int) {
        guard (1...BlockRangeServer.largestRange).contains(length) else {
            answer(connection, status: UInt32(EINVAL), length: 0)
            return
        }
        let pool = device.loop.bufferPool
        var iovecs: [IOVec] = []
        var remaining = length
        while remaining > 0 {
            guard var iovec = try? pool.allocate() else {
                for taken in iovecs { taken.release() }
                answer(connection, status: UInt32(ENOMEM), length: 0)
                return
            }
            iovec.length = min(remaining, iovec.length)
            remaining -= iovec.length
            iovecs.append(iovec)
        }
        nextTag &+= 1
        pending[nextTag] = (connection, iovecs)
        device.read(into: iovecs, at: offset, tag: nextTag)
    }

    private func completed(_ completion: BlockCompletion) {
        guard let (connection, iovecs) = pending.removeValue(forKey: completion.tag) else { return }
        guard !connection.isClosed, completion.error == nil else {
            if !connection.isClosed { answer(connection, status: UInt32(completion.error?.errno ?? EIO), length: 0) }
            for iovec in iovecs { iovec.release() }
            return
        }
        answer(connection, status: 0, length: UInt32(completion.bytes))
        try? connection.send(taking: iovecs)
    }

    private func answer(_ connection: Connection, status: UInt32, length: UInt32) {
        let header = (UInt64(status) << 32 | UInt64(length)).bigEndian
        withUnsafeBytes(of: header) { try? connection.send(copying: $0) }
    }
}
