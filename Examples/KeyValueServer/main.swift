import Evpl
import KeyValueLog
#if canImport(Glibc)
import Glibc
#endif

// A key-value server whose data survives a restart. Every SET is appended
// to a log file (`LogRecord`) through the block API, and answered once the
// write and a flush have completed; at start the log is read back with
// block reads and replayed. One request per line (`Request`).
//
// `KeyValueServer DATA-FILE [PORT]`: prints `listening on ADDRESS`, stops
// on SIGINT or SIGTERM.

/// The values, the log they persist in, and the SETs being made durable.
///
/// SETs are written one at a time, in arrival order: the first in the
/// queue is written, then flushed, then applied and answered, and only then
/// is the next one written. So the log's order is the order answers went
/// out, and the log never has a hole: its end moves only past a record
/// that is durable. A failed write or flush stops the store taking SETs
/// (what is in the log stays right; an operator looks at the disk).
final class KeyValueStore {
    private let loop: EventLoop
    private let device: BlockDevice
    private var values: [String: String]
    private var logEnd: UInt64
    private var queue: [(connection: Connection, key: String, value: String, record: [UInt8])] = []
    private var flushing = false
    private var failure: EvplError?

    init(loop: EventLoop, path: String) throws {
        self.loop = loop
        device = try loop.openBlockDevice(path, engine: .psync, create: 0)
        let (values, end) = try Self.load(device, on: loop)
        self.values = values
        logEnd = UInt64(end)
        try LogRecord.cutTornTail(of: path, at: logEnd, size: device.size)
        device.handler = { [unowned self] _, completion in completed(completion) }
    }

    /// Reads the whole log with block reads, one pool buffer at a time.
    private static func load(_ device: BlockDevice, on loop: EventLoop) throws -> (values: [String: String], end: Int) {
        var log: [UInt8] = []
        var completion: BlockCompletion?
        device.handler = { _, finished in completion = finished }
        while UInt64(log.count) < device.size {
            var chunk = try loop.bufferPool.allocate()
            defer { chunk.release() }
            chunk.length = Int(min(UInt64(chunk.length), device.size - UInt64(log.count)))
            completion = nil
            device.read(into: chunk, at: UInt64(log.count), tag: 0)
            while completion == nil { loop.runOnce() }
            if let error = completion?.error { throw error }
            log += UnsafeRawBufferPointer(chunk.bytes)
        }
        return LogRecord.replay(log)
    }

    func serve(_ connection: Connection) {
        connection.segmenter = Segmenters.delimited(by: [UInt8(ascii: "\n")], maximumLength: 60_000)
        connection.handler = { [unowned self] connection, event in
            if case .received(let line) = event {
                handle(Request(line: line.array.dropLast()), from: connection)
            }
        }
    }

    private func handle(_ request: Request, from connection: Connection) {
        switch request {
        case .get(let key): reply(values[key].map { "VALUE \($0)" } ?? "NOTFOUND", to: connection)
        case .set(let key, let value): set(key, to: value, for: connection)
        case .invalid: reply(Request.usage, to: connection)
        }
    }

    private func set(_ key: String, to value: String, for connection: Connection) {
        let record = LogRecord.encoded(key: key, value: value)
        if let failure {
            reply("ERROR the log failed: \(failure)", to: connection)
            return
        }
        guard record.count <= loop.bufferPool.bufferSize else {
            reply("ERROR a record holds at most \(loop.bufferPool.bufferSize) bytes", to: connection)
            return
        }
        // Answers stay in request order: nothing more is read from this
        // connection until its SET is durable.
        connection.pauseReceiving()
        queue.append((connection, key, value, record))
        if queue.count == 1 { writeFirst() }
    }

    /// Writes the first queued record at the log's end.
    private func writeFirst() {
        guard let first = queue.first else { return }
        guard var iovec = try? loop.bufferPool.allocate() else {
            answerFirst("ERROR out of buffers")
            writeFirst()
            return
        }
        iovec.length = first.record.count
        first.record.withUnsafeBytes { iovec.bytes.copyMemory(from: $0) }
        flushing = false
        device.write(iovec, at: logEnd, tag: 0)
        iovec.release()  // the device holds its own reference until the write completes
    }

    private func completed(_ completion: BlockCompletion) {
        guard let first = queue.first else { return }
        if let error = completion.error {
            failure = error
            while !queue.isEmpty { answerFirst("ERROR the log failed: \(error)") }
        } else if !flushing {
            flushing = true
            device.flush(tag: 0)
        } else {
            logEnd += UInt64(first.record.count)
            values[first.key] = first.value
            answerFirst("OK")
            writeFirst()
        }
    }

    private func answerFirst(_ text: String) {
        let first = queue.removeFirst()
        reply(text, to: first.connection)
        first.connection.resumeReceiving()
    }

    private func reply(_ text: String, to connection: Connection) {
        guard !connection.isClosed else { return }
        try? Array((text + "\n").utf8).withUnsafeBytes { try connection.send(copying: $0) }
    }

    func close() { device.close() }
}

let arguments = CommandLine.arguments.dropFirst()
guard let path = arguments.first else {
    print("usage: KeyValueServer DATA-FILE [PORT]")
    exit(2)
}
do {
    let signals = try TerminationSignals()
    let loop = try EventLoop()
    let store = try KeyValueStore(loop: loop, path: path)
    let listener = try Listener(address: SocketAddress(host: "127.0.0.1", port: UInt16(arguments.dropFirst().first ?? "") ?? 0))
    loop.attach(to: listener) { store.serve($0) }
    let watch = try loop.watch(fd: signals.fd, interest: .readable) { watch, _ in
        watch.remove()
        listener.close()
        // SETs in flight become durable and are answered before the loop stops.
        loop.shutdownGracefully(timeout: .seconds(5)) { _ in store.close() }
    }
    print("listening on \(listener.address)")
    fflush(nil)
    loop.run()
    _ = watch
} catch {
    print("KeyValueServer: \(error)")
    exit(1)
}
