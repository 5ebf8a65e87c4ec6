@testable import Evpl
import EvplHTTP
import HTTPTypes
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// An HTTP server on a loop thread of its own whose handler answers every
/// request with what it read: method, target, version, framing, body and
/// trailers, one `key=value` line each, so that a test checks the server's
/// reading of a request from the outside.
final class HTTPTestServer: Sendable {
    let address: SocketAddress
    private let listener: Listener
    private let pool: EventLoopThreadPool<Void>

    init(backend: EvplProtocol.Backend = .socket, limits: HTTPLimits = .default, timeouts: ConnectionTimeouts = .none,
         headTimeout: Duration? = .seconds(10), bodyTimeout: Duration? = .seconds(30),
         configure: @Sendable (inout EvplConfig) -> Void = { _ in },
         handler: @escaping @Sendable (HTTPServerConnection, HTTPServerEvent) -> Void = HTTPEchoHandler.handle) throws {
        var config = EvplConfig()
        configure(&config)
        let listener = try Listener(address: SocketAddress(host: "127.0.0.1", port: 0), protocol: EvplProtocol(.tcp, backend: backend), timeouts: timeouts)
        self.listener = listener
        address = listener.address
        let configuration = HTTPServerConfiguration(limits: limits, headTimeout: headTimeout, bodyTimeout: bodyTimeout)
        pool = try EventLoopThreadPool(count: 1, config: config) { loop, _ in
            loop.serveHTTP(from: listener, configuration: configuration, handler: handler)
        }
    }

    /// A server whose requests go to `respond`, a task each (the async API).
    init(backend: EvplProtocol.Backend = .socket, limits: HTTPLimits = .default, bodyTimeout: Duration? = .seconds(30),
         configure: @Sendable (inout EvplConfig) -> Void = { _ in },
         respond: @escaping @Sendable (HTTPServerRequest, HTTPResponseWriter) async throws -> Void) throws {
        var config = EvplConfig()
        configure(&config)
        let listener = try Listener(address: SocketAddress(host: "127.0.0.1", port: 0), protocol: EvplProtocol(.tcp, backend: backend))
        self.listener = listener
        address = listener.address
        pool = try EventLoopThreadPool(count: 1, config: config) { loop, _ in
            loop.serveHTTP(from: listener, configuration: HTTPServerConfiguration(limits: limits, bodyTimeout: bodyTimeout), respond: respond)
        }
    }

    /// Runs `body` on the server's loop and waits for its result.
    func onLoop<R: Sendable>(_ body: @escaping @Sendable (EventLoop) -> R) throws -> R {
        let result = Locked<R?>(nil)
        pool.remotes[0].execute { loop in result.withLock { $0 = body(loop) } }
        let deadline = MonotonicClock.nanoseconds() + 10_000_000_000
        while MonotonicClock.nanoseconds() < deadline {
            if let value = result.withLock({ $0 }) { return value }
            usleep(1000)
        }
        throw TimedOut(what: "the server loop")
    }

    deinit {
        listener.close()
        _ = pool.shutdownGracefully(timeout: .seconds(5))
    }
}

/// The test server's handler: it reads each request whole, then answers
/// `200` with a description of it. `X-Respond: early` answers at the head,
/// before the body; `X-Respond: stream` answers with a chunked body of
/// three pieces.
enum HTTPEchoHandler {
    final class Request {
        let head: HTTPRequestHead
        var body: [UInt8] = []
        init(_ head: HTTPRequestHead) { self.head = head }
    }

    static func handle(_ exchange: HTTPServerConnection, _ event: HTTPServerEvent) {
        switch event {
        case .head(let head):
            exchange.context = Request(head)
            if head.request.headerFields[HTTPField.Name("X-Respond")!] == "early" {
                try? exchange.respond(HTTPResponse(status: .ok), body: "early")
            }
        case .body(let bytes):
            (exchange.context as? Request)?.body += bytes.array
        case .end(let trailers):
            guard let request = exchange.context as? Request, exchange.request != nil else { return }
            let description = describe(request, trailers: trailers)
            if request.head.request.headerFields[HTTPField.Name("X-Respond")!] == "stream" {
                try? exchange.writeHead(HTTPResponse(status: .ok))
                for line in description.split(separator: "\n") { try? exchange.writeBody(Array((line + "\n").utf8)) }
                try? exchange.end()
            } else {
                try? exchange.respond(HTTPResponse(status: .ok), body: description)
            }
        case .closed:
            exchange.context = nil
        case .writable:
            break
        }
    }

    static func describe(_ request: Request, trailers: HTTPFields?) -> String {
        let head = request.head
        let framing: String
        switch head.bodyFraming {
        case .none: framing = "none"
        case .length(let length): framing = "length:\(length)"
        case .chunked: framing = "chunked"
        case .untilClose: framing = "untilClose"
        }
        var lines = [
            "method=\(head.request.method.rawValue)",
            "target=\(head.request.path ?? "")",
            "authority=\(head.request.authority ?? "")",
            "scheme=\(head.request.scheme ?? "")",
            "version=\(head.version)",
            "keepalive=\(head.keepAlive)",
            "expect=\(head.expectsContinue)",
            "framing=\(framing)",
            "body=\(request.body.map { String(format2: $0) }.joined())",
            "fields=\(head.request.headerFields.map { "\($0.name.rawName):\($0.value)" }.joined(separator: "|"))",
        ]
        if let trailers { lines.append("trailers=\(trailers.map { "\($0.name.rawName):\($0.value)" }.joined(separator: "|"))") }
        return lines.joined(separator: "\n") + "\n"
    }
}

extension String {
    /// Two lowercase hex digits.
    init(format2 byte: UInt8) {
        let digits = Array("0123456789abcdef")
        self = String([digits[Int(byte >> 4)], digits[Int(byte & 15)]])
    }
}

/// A response as a strict, independent reader saw it on the wire.
struct WireResponse: CustomStringConvertible {
    var version = ""
    var status = 0
    var reason = ""
    var fields: [(name: String, value: String)] = []
    var body: [UInt8] = []
    /// The server ended the stream after this response.
    var closedAfter = false

    func field(_ name: String) -> String? {
        fields.first { $0.name.lowercased() == name.lowercased() }?.value
    }

    /// The echo handler's `key=value` lines.
    var echoed: [String: String] {
        var result: [String: String] = [:]
        for line in String(decoding: body, as: UTF8.self).split(separator: "\n") {
            guard let equals = line.firstIndex(of: "=") else { continue }
            result[String(line[..<equals])] = String(line[line.index(after: equals)...])
        }
        return result
    }

    var description: String { "\(status) \(reason) \(fields) body \(body.count) bytes" }
}

/// How a client hands a request to the socket.
enum Delivery: String, CaseIterable, Sendable {
    /// One write.
    case whole
    /// Two writes, split in the middle.
    case split
    /// A write per byte.
    case byteAtATime
}

/// A blocking HTTP client over a plain socket, with its own strict reading
/// of responses (RFC 9112 section 6.3), sharing no code with the library.
final class RawHTTPClient {
    let fd: Int32
    private var buffer: [UInt8] = []
    private(set) var peerClosed = false
    /// The errno of the last read that failed (ECONNRESET, EAGAIN at the timeout).
    private(set) var lastErrno: Int32 = 0
    /// Bytes read but not yet parsed.
    var unparsed: Int { buffer.count }

    init(_ address: SocketAddress, timeoutSeconds: Int = 10) throws {
        fd = rawConnect(to: address)
        try #require(fd >= 0, "connect to \(address)")
        setReceiveTimeout(fd, seconds: timeoutSeconds)
    }

    deinit { close(fd) }

    /// Writes `bytes` as `delivery` says; false once the server has closed.
    @discardableResult
    func send(_ bytes: [UInt8], _ delivery: Delivery = .whole) -> Bool {
        switch delivery {
        case .whole:
            return writeAll(bytes[...])
        case .split:
            let middle = bytes.count / 2
            guard writeAll(bytes[..<middle]) else { return false }
            usleep(2000)
            return writeAll(bytes[middle...])
        case .byteAtATime:
            for index in bytes.indices where !writeAll(bytes[index...index]) { return false }
            return true
        }
    }

    /// `send` with MSG_NOSIGNAL: a server that closed is an answer, not a SIGPIPE.
    private func writeAll(_ bytes: ArraySlice<UInt8>) -> Bool {
        bytes.withUnsafeBytes { raw in
            var done = 0
            while done < raw.count {
                let result = Glibc.send(fd, raw.baseAddress! + done, raw.count - done, Int32(MSG_NOSIGNAL))
                if result < 0 && errno == EINTR { continue }
                if result <= 0 { return false }
                done += result
            }
            return true
        }
    }

    func send(_ text: String, _ delivery: Delivery = .whole) {
        send(Array(text.utf8), delivery)
    }

    /// Reads more into the buffer; false at the end of the stream or on timeout.
    private func fill() -> Bool {
        var chunk = [UInt8](repeating: 0, count: 65536)
        var count = 0
        // A signal to this process (some tests' children end meanwhile) interrupts a blocking read: read again.
        repeat {
            count = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
        } while count < 0 && errno == EINTR
        guard count > 0 else {
            if count == 0 { peerClosed = true } else { lastErrno = errno }
            return false
        }
        buffer += chunk[..<count]
        return true
    }

    private func line() -> String? {
        while true {
            if let lf = buffer.firstIndex(of: 10), lf > 0, buffer[lf - 1] == 13 {
                let text = String(decoding: buffer[..<(lf - 1)], as: UTF8.self)
                buffer.removeFirst(lf + 1)
                return text
            }
            guard fill() else { return nil }
        }
    }

    private func take(_ count: Int) -> [UInt8]? {
        while buffer.count < count { guard fill() else { return nil } }
        let bytes = Array(buffer[..<count])
        buffer.removeFirst(count)
        return bytes
    }

    /// Reads one response (1xx included) to a request with `method`; `nil`
    /// when the stream ended or timed out first.
    func readResponse(method: String = "GET") -> WireResponse? {
        guard let statusLine = line() else { return nil }
        var response = WireResponse()
        let parts = statusLine.split(separator: " ", maxSplits: 2, omittingEmptySubsequences: false)
        guard parts.count >= 2, let status = Int(parts[1]) else { return nil }
        response.version = String(parts[0])
        response.status = status
        response.reason = parts.count > 2 ? String(parts[2]) : ""
        while let fieldLine = line(), !fieldLine.isEmpty {
            guard let colon = fieldLine.firstIndex(of: ":") else { return nil }
            response.fields.append((String(fieldLine[..<colon]), fieldLine[fieldLine.index(after: colon)...].trimmingCharacters(in: " \t")))
        }
        if method == "HEAD" || (100..<200).contains(status) || status == 204 || status == 304 { return response }
        if response.field("Transfer-Encoding")?.lowercased() == "chunked" {
            while true {
                guard let sizeLine = line(), let size = Int(sizeLine.split(separator: ";")[0], radix: 16) else { return nil }
                if size == 0 {
                    while let trailer = line(), !trailer.isEmpty {}
                    break
                }
                guard let data = take(size), line() == "" else { return nil }
                response.body += data
            }
        } else if let length = response.field("Content-Length").flatMap({ Int($0) }) {
            guard let body = take(length) else { return nil }
            response.body = body
        } else {
            while fill() {}
            response.body = buffer
            buffer = []
            response.closedAfter = true
        }
        return response
    }

    /// Whether the server ends the stream within `seconds`, with nothing more to read.
    func closedByServer(seconds: Int = 5) -> Bool {
        setReceiveTimeout(fd, seconds: seconds)
        if peerClosed { return buffer.isEmpty }
        while fill() {}
        return peerClosed && buffer.isEmpty
    }
}

extension String {
    func trimmingCharacters(in set: String) -> String {
        var text = Substring(self)
        while let first = text.first, set.contains(first) { text = text.dropFirst() }
        while let last = text.last, set.contains(last) { text = text.dropLast() }
        return String(text)
    }
}

extension Substring {
    func trimmingCharacters(in set: String) -> String { String(self).trimmingCharacters(in: set) }
}
