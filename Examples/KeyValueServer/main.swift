import Evpl
#if canImport(Glibc)
import Glibc
#endif

// A key-value server whose data survives a restart. Every SET is appended
// to a log file through the block API, and answered once the write and a
// flush have completed; at start the log is read back with block reads and
// replayed. One request per line:
//
//   SET key value   ->  OK
//   GET key         ->  VALUE value  |  NOTFOUND
//   anything else   ->  ERROR reason
//
// `KeyValueServer DATA-FILE [PORT]`: prints `listening on ADDRESS`, stops
// on SIGINT or SIGTERM.

/// The log's records: key length and value length (4 bytes each,
/// big-endian), then the key and the value, UTF-8.
enum LogRecord {
    static func encoded(key: String, value: String) -> [UInt8] {
        let key = Array(key.utf8), value = Array(value.utf8)
        var record: [UInt8] = []
        for length in [key.count, value.count] {
            withUnsafeBytes(of: UInt32(length).bigEndian) { record += $0 }
        }
        return record + key + value
    }

    /// The values a log holds, and where its last whole record ends: a
    /// record cut short by a crash is dropped (the next SET overwrites it).
    static func replay(_ log: [UInt8]) -> (values: [String: String], end: Int) {
        var values: [String: String] = [:]
        var position = 0
        func length(at index: Int) -> Int { log[index..<(index + 4)].reduce(0) { $0 << 8 | Int($1) } }
        while log.count - position >= 8 {
            let keyLength = length(at: position), valueLength = length(at: position + 4)
            let end = position + 8 + keyLength + valueLength
            guard end <= log.count else { break }
            let key = String(decoding: log[(position + 8)..<(position + 8 + keyLength)], as: UTF8.self)
            values[key] = String(decoding: log[(position + 8 + keyLength)..<end], as: UTF8.self)
            position = end
        }
        return (values, position)
    }
}

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
        // A record torn by a crash goes, so that stale bytes past the next
        // (shorter) record can never read as a record of their own.
        if logEnd < device.size && truncate(path, off_t(logEnd)) != 0 {
            throw EvplError(.system, operation: "truncate", context: path)
        }
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
                handle(String(decoding: line.array.dropLast(), as: UTF8.self), from: connection)
            }
        }
    }

    private func handle(_ line: String, from connection: Connection) {
        let words = line.split(separator: " ", maxSplits: 2, omittingEmptySubsequences: true)
        switch (words.first, words.count) {
        case ("GET", 2):
            reply(values[String(words[1])].map { "VALUE \($0)" } ?? "NOTFOUND", to: connection)
        case ("SET", 3):
            set(String(words[1]), to: String(words[2]), for: connection)
        default:
            reply("ERROR expected SET key value or GET key", to: connection)
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
