import Evpl
#if canImport(Glibc)
import Glibc
#endif

// A block server on several loops sharing one file: the storage pattern
// for many loops. A `BlockDevice` belongs to the loop that opened it, so
// each loop opens the file once, in the pool's `onStart`, and serves the
// connections it accepted with its own device, queue and completions. The
// loops never lock anything: the kernel orders their I/O on the one file.
//
// Requests and replies are frames with a 4-byte big-endian length:
//   request  'R' offset:8 length:4         reply 'O' + the bytes
//            'W' offset:8 data...          reply 'O'
//            'F'                           reply 'O' once every write the
//                                          server answered is durable
//   any failure: 'E' + the reason as text
// A connection's requests are answered in order, one at a time. Two loops
// writing the same range land in either order: clients that share a range
// agree on who writes it (here, each writes its own).
//
// `RangeServer FILE SIZE [PORT] [LOOPS]`: creates FILE at SIZE bytes if it
// is smaller, prints `listening on ADDRESS`, stops on SIGINT or SIGTERM.

/// One loop's device and the requests it has in flight.
final class LoopStorage {
    let loop: EventLoop
    let device: BlockDevice
    private var inFlight: [UInt64: (connection: Connection, reply: [IOVec])] = [:]
    private var nextTag: UInt64 = 0

    init(loop: EventLoop, path: String, size: UInt64) throws {
        self.loop = loop
        device = try loop.openBlockDevice(path, engine: .psync, create: size)
        device.handler = { [unowned self] _, completion in completed(completion) }
    }

    func serve(_ connection: Connection) {
        connection.segmenter = Segmenters.lengthPrefixed32(maximumPayload: 1 << 20)
        connection.handler = { [unowned self] connection, event in
            if case .received(let frame) = event { handle(frame.dropFirst(4), from: connection) }
        }
    }

    private func handle(_ request: ReceivedBytes, from connection: Connection) {
        guard request.count >= 1 else { return reply(error: "empty request", to: connection) }
        let tag = nextTag
        switch request[0] {
        case UInt8(ascii: "R") where request.count == 13:
            let offset = request.loadBigEndianUInt64(at: 1)
            let length = Int(request.loadBigEndianUInt32(at: 9))
            guard offset + UInt64(length) <= device.size else { return reply(error: "past the end", to: connection) }
            guard let buffers = allocate(length) else { return reply(error: "too long or out of buffers", to: connection) }
            device.read(into: buffers, at: offset, tag: tag)
            inFlight[tag] = (connection, buffers)
        case UInt8(ascii: "W") where request.count > 9:
            let offset = request.loadBigEndianUInt64(at: 1)
            let data = request.dropFirst(9)
            guard offset + UInt64(data.count) <= device.size else { return reply(error: "past the end", to: connection) }
            // The received buffers go to the device as they are: no copy.
            let iovecs = data.retainedIOVecs()
            device.write(iovecs, at: offset, tag: tag)
            for iovec in iovecs { iovec.release() }  // the device holds its own references
            inFlight[tag] = (connection, [])
        case UInt8(ascii: "F") where request.count == 1:
            device.flush(tag: tag)
            inFlight[tag] = (connection, [])
        default:
            return reply(error: "unknown request", to: connection)
        }
        nextTag += 1
        // Replies stay in request order: nothing more is read until this one is answered.
        connection.pauseReceiving()
    }

    /// Pool buffers covering `length` bytes, or `nil` when a request that
    /// long would not fit in one block request or the pool is at its ceiling.
    private func allocate(_ length: Int) -> [IOVec]? {
        let count = (length + loop.bufferPool.bufferSize - 1) / loop.bufferPool.bufferSize
        guard length > 0, count <= BlockDevice.maxIOVecsPerRequest else { return nil }
        var buffers: [IOVec] = []
        var left = length
        while left > 0 {
            guard var iovec = try? loop.bufferPool.allocate() else {
                for buffer in buffers { buffer.release() }
                return nil
            }
            iovec.length = min(iovec.length, left)
            left -= iovec.length
            buffers.append(iovec)
        }
        return buffers
    }

    private func completed(_ completion: BlockCompletion) {
        guard let (connection, buffers) = inFlight.removeValue(forKey: completion.tag) else { return }
        defer { connection.resumeReceiving() }
        if let error = completion.error {
            for buffer in buffers { buffer.release() }
            return reply(error: "\(error)", to: connection)
        }
        let length = buffers.reduce(0) { $0 + $1.length }
        guard !connection.isClosed else {
            for buffer in buffers { buffer.release() }
            return
        }
        // The header, then the very buffers the device read into.
        try? connection.send(header(status: "O", length: 1 + length))
        try? connection.send(taking: buffers)
    }

    private func reply(error text: String, to connection: Connection) {
        guard !connection.isClosed else { return }
        let message = Array(text.utf8)
        try? connection.send(header(status: "E", length: 1 + message.count) + message)
    }

    private func header(status: Unicode.Scalar, length: Int) -> [UInt8] {
        withUnsafeBytes(of: UInt32(length).bigEndian, Array.init) + [UInt8(ascii: status)]
    }

    func close() { device.close() }
}

let arguments = Array(CommandLine.arguments.dropFirst())
guard arguments.count >= 2, let size = UInt64(arguments[1]) else {
    print("usage: RangeServer FILE SIZE [PORT] [LOOPS]")
    exit(2)
}
let path = arguments[0]
let port = arguments.count > 2 ? UInt16(arguments[2]) ?? 0 : 0
let loops = arguments.count > 3 ? Int(arguments[3]) ?? 2 : 2

do {
    let signals = try TerminationSignals()
    let listener = try Listener(address: SocketAddress(host: "127.0.0.1", port: port))
    let pool = try EventLoopThreadPool(count: loops) { loop, index -> LoopStorage? in
        do {
            let storage = try LoopStorage(loop: loop, path: path, size: size)
            loop.attach(to: listener) { storage.serve($0) }
            return storage
        } catch {
            print("RangeServer: loop \(index): \(error)")
            return nil
        }
    } onStop: { _, storage in
        storage?.close()
    }
    print("listening on \(listener.address)")
    fflush(nil)
    signals.wait()
    listener.close()
    // Requests in flight are answered before the loops stop.
    print("stopped: \(pool.shutdownGracefully(timeout: .seconds(5)))")
} catch {
    print("RangeServer: \(error)")
    exit(1)
}
