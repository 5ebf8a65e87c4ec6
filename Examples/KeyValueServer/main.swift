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
final class KeyValueStore {
    private let loop: EventLoop
    private let device: BlockDevice
    private var values: [String: String]
    private var logEnd: UInt64
    private var nextTag: UInt64 = 0
    /// SETs in flight by tag: the connection waiting, what it sets, and
    /// whether the write is done (the flush comes next).
    private var pending: [UInt64: (connection: Connection, key: String, value: String, written: Bool)] = [:]

    init(loop: EventLoop, path: String) throws {
        self.loop = loop
        device = try loop.openBlockDevice(path, engine: .psync, create: 0)
        let (values, end) = try Self.load(device, on: loop)
        self.values = values
        logEnd = UInt64(end)
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
        guard var iovec = try? loop.bufferPool.allocate(), record.count <= iovec.length else {
            reply("ERROR no room for the record", to: connection)
            return
        }
        iovec.length = record.count
        record.withUnsafeBytes { iovec.bytes.copyMemory(from: $0) }
        nextTag += 1
        pending[nextTag] = (connection, key, value, false)
        // Answers stay in request order: nothing more is read from this
        // connection until its SET is durable.
        connection.pauseReceiving()
        device.write(iovec, at: logEnd, tag: nextTag)
        iovec.release()  // the device holds its own reference until the write completes
        logEnd += UInt64(record.count)
    }

    private func completed(_ completion: BlockCompletion) {
        guard var set = pending[completion.tag] else { return }
        if let error = completion.error {
            pending[completion.tag] = nil
            reply("ERROR \(error)", to: set.connection)
            set.connection.resumeReceiving()
        } else if !set.written {
            set.written = true
            pending[completion.tag] = set
            device.flush(tag: completion.tag)
        } else {
            pending[completion.tag] = nil
            values[set.key] = set.value
            reply("OK", to: set.connection)
            set.connection.resumeReceiving()
        }
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
