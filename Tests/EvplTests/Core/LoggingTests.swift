import Evpl
import Logging
import Testing

/// A log handler that keeps every record, for tests to read.
final class CapturedLog: @unchecked Sendable {
    struct Record {
        var level: Logger.Level
        var message: String
        var metadata: Logger.Metadata
    }

    private let lock = PthreadLock()
    private var stored: [Record] = []

    var records: [Record] { lock.locked { stored } }

    func logger(level: Logger.Level = .trace) -> Logger {
        var logger = Logger(label: "evpl-test") { _ in Handler(log: self) }
        logger.logLevel = level
        return logger
    }

    fileprivate func append(_ record: Record) { lock.locked { stored.append(record) } }

    private struct Handler: LogHandler {
        let log: CapturedLog
        var metadata: Logger.Metadata = [:]
        var logLevel: Logger.Level = .trace

        subscript(metadataKey key: String) -> Logger.Metadata.Value? {
            get { metadata[key] }
            set { metadata[key] = newValue }
        }

        func log(event: LogEvent) {
            log.append(Record(level: event.level, message: "\(event.message)", metadata: metadata.merging(event.metadata ?? [:]) { $1 }))
        }
    }
}

@Suite("Logging")
struct LoggingTests {
    @Test("a loop logs through the configured logger, with its name; the default logger is silent")
    func loopLogs() throws {
        let log = CapturedLog()
        var config = EvplConfig()
        config.logger = log.logger()
        let loop = try EventLoop(config: config, loopConfig: LoopConfig(name: "logged"))
        #expect(log.records.contains { $0.message == "loop ready" && $0.level == .debug && $0.metadata["evpl-loop"] == "logged" })
        var done = false
        loop.shutdownGracefully(timeout: .seconds(1)) { _ in done = true }
        try spin(loop, "the shutdown") { done }
        #expect(log.records.contains { $0.message == "graceful shutdown done" && $0.level == .info })
        #expect(EvplConfig().logger.handler is SwiftLogNoOpLogHandler)
        // Equal settings are equal whatever they log to.
        #expect(config == EvplConfig())
    }

    @Test("nothing is logged per message: 1000 echoed messages add no record")
    func quietHotPath() throws {
        let log = CapturedLog()
        var config = EvplConfig()
        config.logger = log.logger()
        let loop = try EventLoop(config: config)
        let listener = try Listener(address: SocketAddress(host: "127.0.0.1", port: 0), logger: log.logger())
        defer { listener.close() }
        loop.attach(to: listener) { connection in
            connection.handler = { connection, event in
                if case .received(let bytes) = event { bytes.withContiguousBytes { try? connection.send(copying: $0) } }
            }
        }
        var echoed = 0
        var connected = false
        let client = try loop.connect(to: listener.address) { _, event in
            switch event {
            case .connected: connected = true
            case .received(let bytes): echoed += bytes.count
            default: break
            }
        }
        try spin(loop, "connected") { connected }
        let before = log.records.count
        for _ in 0..<1000 { try [UInt8](repeating: 7, count: 16).withUnsafeBytes { try client.send(copying: $0) } }
        try spin(loop, "the echoes") { echoed == 16_000 }
        #expect(log.records.count == before, "\(log.records.dropFirst(before).map(\.message))")
        client.close()
    }
}
