import Evpl
#if canImport(Glibc)
import Glibc
#endif

/// The server behind `evpl echo` and `evpl perf server`: a listener (or a
/// UDP endpoint) served by a pool of event-loop threads.
final class EchoServer: Sendable {
    enum Mode: Sendable {
        /// Echo every byte back.
        case echo
        /// Read an 8-byte perf handshake first: `EVPLPING` echoes, `EVPLSTRM` discards.
        case perf
    }

    let address: SocketAddress
    private let pool: EventLoopThreadPool<DatagramEndpoint?>
    private let listener: Listener?
    /// The task serving connections through the async API, if it is used.
    private let serving: Task<Void, Never>?

    init(protocol evplProtocol: EvplProtocol, address: SocketAddress, threads: Int, mode: Mode, api: API = .callbacks,
         timeouts: ConnectionTimeouts = .none, config: EvplConfig? = nil, cpu: Int? = nil) throws(EvplError) {
        if evplProtocol.isStream {
            var timeouts = timeouts
            // The perf header is 8 raw bytes: the callbacks end the handshake once all have come.
            if mode == .perf && api == .callbacks { timeouts.handshakeEndsWithFirstMessage = false }
            let listener = try Listener(address: address, protocol: evplProtocol, timeouts: timeouts, logger: config?.logger ?? .evplSilent)
            self.listener = listener
            self.address = listener.address
            pool = try EventLoopThreadPool(count: threads, config: config, loopConfig: Self.loopConfig(cpu: cpu)) { loop, _ in
                guard api == .callbacks else { return nil }
                loop.attach(to: listener) { connection in
                    switch mode {
                    case .echo: connection.handler = Self.echo
                    case .perf:
                        connection.context = PerfServerConnection()
                        connection.handler = Self.perf
                    }
                }
                return nil
            }
            if api == .async {
                let executors = pool.executors
                serving = Task(executorPreference: executors[0]) {
                    await listener.serve(on: executors) { connection in try await Self.serve(connection, mode: mode) }
                }
            } else {
                serving = nil
            }
        } else {
            guard api == .callbacks else {
                throw EvplError(.invalidArgument, operation: "serve", context: "the async API serves stream protocols (tcp, unix)")
            }
            serving = nil
            guard threads == 1 else {
                throw EvplError(.invalidArgument, operation: "serve", context: "udp serves from one thread (got --threads \(threads))")
            }
            let bound = Locked<Result<SocketAddress, EvplError>?>(nil)
            pool = try EventLoopThreadPool(count: 1, config: config, loopConfig: Self.loopConfig(cpu: cpu)) { loop, _ in
                do throws(EvplError) {
                    let endpoint = try loop.bindDatagram(address, protocol: evplProtocol) { endpoint, bytes, sender in
                        bytes.withContiguousBytes { try? endpoint.send(to: sender, copying: $0) }
                    }
                    bound.withLock { $0 = .success(endpoint.localAddress) }
                    return endpoint
                } catch {
                    bound.withLock { $0 = .failure(error) }
                    return nil
                }
            } onStop: { _, endpoint in
                endpoint?.close()
            }
            listener = nil
            switch bound.withLock({ $0 }) {
            case .success(let local): self.address = local
            case .failure(let error):
                pool.stop()
                throw error
            case nil:
                pool.stop()
                throw EvplError(.system, operation: "serve", context: "udp endpoint not bound")
            }
        }
    }

    /// Stops accepting, lets every connection finish (delivering what is
    /// queued) for up to `timeout`, closes the rest and joins the threads.
    /// A peer that stays silent for a second after the server's end of
    /// stream (an idle keep-alive client) does not hold it longer.
    @discardableResult
    func stop(timeout: Duration = .seconds(5)) -> ShutdownReport {
        serving?.cancel()
        listener?.close()
        return pool.shutdownGracefully(timeout: timeout, linger: .seconds(1))
    }

    private static func loopConfig(cpu: Int?) -> @Sendable (Int) -> LoopConfig {
        { index in LoopConfig(name: "evpl-srv-\(index)", cpuAffinity: cpu.map { [$0] }) }
    }

    private static func echo(_ connection: Connection, _ event: ConnectionEvent) {
        guard case .received(let bytes) = event else { return }
        bytes.forEachSegment { piece in send(piece, on: connection) }
    }

    /// Echoes `piece`. A connection that is finishing (a shutdown began)
    /// takes no more, and what it has queued still goes out; any other
    /// failure closes it.
    private static func send(_ piece: UnsafeRawBufferPointer, on connection: Connection) {
        do throws(EvplError) {
            try connection.send(copying: piece)
        } catch where error.code == .invalidState {
        } catch {
            connection.close()
        }
    }

    private static func perf(_ connection: Connection, _ event: ConnectionEvent) {
        guard case .received(let bytes) = event,
              let state = connection.context.map({ unsafeDowncast($0, to: PerfServerConnection.self) }) else { return }
        if state.sink { return }
        var skip = 0
        if state.headerBytes < 8 {
            skip = min(8 - state.headerBytes, bytes.count)
            for index in 0..<skip { state.header = state.header << 8 | UInt64(bytes[index]) }
            state.headerBytes += skip
            if state.headerBytes == 8 {
                connection.endHandshake()
                switch state.header {
                case PerfHandshake.ping: break
                case PerfHandshake.stream: state.sink = true
                default: connection.close()
                }
            }
            if state.sink || skip == bytes.count { return }
        }
        var offset = 0
        bytes.forEachSegment { piece in
            let start = max(0, skip - offset)
            offset += piece.count
            guard start < piece.count else { return }
            send(UnsafeRawBufferPointer(rebasing: piece[start...]), on: connection)
        }
    }
}

extension EchoServer {
    /// One connection through the async API: the same protocol as the
    /// callbacks above, each received chunk echoed by copy.
    nonisolated(nonsending) private static func serve(_ connection: AsyncConnection, mode: Mode) async throws(EvplError) {
        var header: UInt64 = 0
        var headerBytes = mode == .perf ? 0 : 8
        var sink = false
        do throws(EvplError) {
            while let bytes = try await connection.receive() {
                if sink { continue }
                var skip = 0
                if headerBytes < 8 {
                    skip = min(8 - headerBytes, bytes.count)
                    for index in 0..<skip { header = header << 8 | UInt64(bytes[index]) }
                    headerBytes += skip
                    if headerBytes == 8 {
                        switch header {
                        case PerfHandshake.ping: break
                        case PerfHandshake.stream: sink = true
                        default:
                            connection.close()
                            return
                        }
                    }
                    if sink || skip == bytes.count { continue }
                }
                if skip == 0 {
                    try await connection.write(copying: bytes)
                } else {
                    try await connection.write(Array(bytes.array[skip...]))
                }
            }
        } catch {
            // A shutdown finished the connection: what is queued still goes out.
            guard error.code == .invalidState || error.code == .shutdown else { throw error }
        }
    }
}

/// The 8-byte words a perf client opens each stream connection with.
enum PerfHandshake {
    /// "EVPLPING": echo everything that follows.
    static let ping: UInt64 = 0x4556_504C_5049_4E47
    /// "EVPLSTRM": discard everything that follows.
    static let stream: UInt64 = 0x4556_504C_5354_524D

    static func bytes(_ word: UInt64) -> [UInt8] {
        (0..<8).map { UInt8(truncatingIfNeeded: word >> (56 - 8 * UInt64($0))) }
    }
}

/// Per-connection handshake state of the perf server.
final class PerfServerConnection {
    var header: UInt64 = 0
    var headerBytes = 0
    var sink = false
}

func flushStandardOutput() {
    fflush(nil)
}
