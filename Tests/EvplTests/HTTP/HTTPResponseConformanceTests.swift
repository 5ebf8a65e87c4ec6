@testable import Evpl
import EvplHTTP
import HTTPTypes
import Synchronization
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// A well-formed response as RFC 9112 and RFC 9110 allow a server to send
/// it, with what the client must make of it: the response direction of the
/// conformance model (the request direction is `HTTPConformanceModel`).
struct ResponseShape: Sendable, CustomStringConvertible {
    enum Framing: CaseIterable, Sendable {
        case emptyLength
        case length
        case chunked
        /// Chunk extensions, an empty chunk-size line's extension and trailers.
        case chunkedWithExtras
        /// Neither `Content-Length` nor chunked: the body runs to the close (section 6.3 item 8).
        case untilClose
    }

    enum Delivery: CaseIterable, Sendable {
        case whole
        case split
        case byteAtATime
    }

    var minor: Int
    var interims: Int
    var status: Int
    var method: HTTPRequest.Method
    var framing: Framing
    /// The `Connection` field's value, if any.
    var connection: String?
    /// Field names in upper case and OWS around values (sections 5.1, 5.5).
    var oddFieldSyntax: Bool
    var delivery: Delivery

    static let body = "response body, in a shape of the model"

    var description: String {
        "HTTP/1.\(minor) \(status) to \(method), \(interims) interim, \(framing), Connection: \(connection ?? "-"), odd syntax \(oddFieldSyntax), \(delivery)"
    }

    /// Every shape of the model. Chunked framing is HTTP/1.1 only: a server
    /// must not send it to (or as) HTTP/1.0, and a client must treat such a
    /// message's framing as faulty (section 6.1; a defect in `HTTPClientTests`).
    static var all: [ResponseShape] {
        var shapes: [ResponseShape] = []
        for minor in [0, 1] {
            for interims in [0, 1] {
                for status in [200, 204, 304, 404] {
                    for method in [HTTPRequest.Method.get, .head] {
                        for framing in Framing.allCases where minor == 1 || (framing != .chunked && framing != .chunkedWithExtras) {
                            for connection in [nil, "close", "keep-alive"] as [String?] {
                                for odd in [false, true] {
                                    for delivery in Delivery.allCases {
                                        shapes.append(ResponseShape(minor: minor, interims: interims, status: status, method: method, framing: framing,
                                                                    connection: connection, oddFieldSyntax: odd, delivery: delivery))
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        return shapes
    }

    /// Whether no body may follow the head: a response to HEAD, 204 and 304
    /// (section 6.3 items 1 and 2), whatever its framing fields say.
    var bodyless: Bool { method == .head || status == 204 || status == 304 }

    /// The bytes the server sends.
    var wire: [UInt8] {
        func field(_ name: String, _ value: String) -> String {
            oddFieldSyntax ? "\(name.uppercased()):  \t\(value) \t\r\n" : "\(name): \(value)\r\n"
        }
        var text = String(repeating: "HTTP/1.1 100 Continue\r\n\r\n", count: interims)
        let reason = [200: "OK", 204: "No Content", 304: "Not Modified", 404: "Not Found"][status]!
        text += "HTTP/1.\(minor) \(status) \(reason)\r\n"
        text += field("Server", "raw")
        if let connection { text += field("Connection", connection) }
        let body = Self.body
        switch framing {
        case .emptyLength:
            if status != 204 { text += field("Content-Length", "0") }
            text += "\r\n"
        case .length:
            if status != 204 { text += field("Content-Length", "\(body.utf8.count)") }
            text += "\r\n"
            if !bodyless { text += body }
        case .chunked, .chunkedWithExtras:
            text += field("Transfer-Encoding", "chunked")
            text += "\r\n"
            if !bodyless {
                let cut = body.index(body.startIndex, offsetBy: 9)
                for piece in [body[..<cut], body[cut...]] {
                    text += String(piece.utf8.count, radix: 16) + (framing == .chunkedWithExtras ? ";name=value;flag" : "") + "\r\n" + piece + "\r\n"
                }
                text += framing == .chunkedWithExtras ? "0;last\r\nX-Trailer: t\r\n\r\n" : "0\r\n\r\n"
            }
        case .untilClose:
            text += "\r\n"
            if !bodyless { text += body }
        }
        return Array(text.utf8)
    }

    /// The body the client must deliver.
    var expectedBody: String {
        bodyless || framing == .emptyLength ? "" : Self.body
    }

    /// Whether the client may send another request on the connection
    /// (section 9.3): HTTP/1.1 unless `close`, HTTP/1.0 only with
    /// `keep-alive`, never when the body ran to the close.
    var expectedKeepAlive: Bool {
        let persistent = minor == 1 ? connection != "close" : connection == "keep-alive"
        return persistent && (bodyless || framing != .untilClose)
    }
}

/// Serves the model's responses on one listening socket, a connection
/// each: the request's path names the shape, the response goes out as the
/// shape's delivery says, then the server closes.
final class ResponseModelServer: Sendable {
    let address: SocketAddress
    private let thread: TestThread
    private let listenFD: Int32

    init(_ shapes: [ResponseShape]) throws {
        let (fd, bound) = try rawListen(SocketAddress(host: "127.0.0.1", port: 0))
        listenFD = fd
        address = bound
        thread = TestThread {
            while true {
                let client = accept(fd, nil, nil)
                guard client >= 0 else { return }
                var one: Int32 = 1
                setsockopt(client, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
                setReceiveTimeout(client, seconds: 5)
                var head: [UInt8] = []
                var byte: UInt8 = 0
                while recv(client, &byte, 1, 0) == 1 {
                    head.append(byte)
                    if head.count >= 4 && head.suffix(4) == [13, 10, 13, 10] { break }
                }
                let line = String(decoding: head.prefix { $0 != 13 }, as: UTF8.self)
                let index = line.split(separator: " ").dropFirst().first.flatMap { Int($0.split(separator: "/").last ?? "") }
                if let index, index < shapes.count {
                    let shape = shapes[index]
                    let wire = shape.wire
                    switch shape.delivery {
                    case .whole:
                        _ = rawWriteAll(client, wire)
                    case .split:
                        _ = rawWriteAll(client, Array(wire[..<(wire.count / 2)]))
                        usleep(1000)
                        _ = rawWriteAll(client, Array(wire[(wire.count / 2)...]))
                    case .byteAtATime:
                        for byte in wire { _ = rawWriteAll(client, [byte]) }
                    }
                }
                shutdown(client, Int32(SHUT_WR))
                while recv(client, &byte, 1, 0) == 1 {}
                close(client)
            }
        }
    }

    deinit {
        shutdown(listenFD, Int32(SHUT_RDWR))
        close(listenFD)
        thread.join()
    }
}

@Suite struct HTTPResponseConformanceTests {
    @Test("the client reads every response shape of the model as RFC 9112 frames it: status, body, persistence, whatever the delivery",
          arguments: StreamCase.backends)
    func responseModel(backend: EvplProtocol.Backend) throws {
        let shapes = ResponseShape.all
        let server = try ResponseModelServer(shapes)
        let loop = try makeLoop()
        let client = HTTPClient(loop: loop, configuration: HTTPClientConfiguration(evplProtocol: EvplProtocol(.tcp, backend: backend)))
        var divergences: [String] = []
        for (index, shape) in shapes.enumerated() {
            let outcome = try fetch(client, get(server.address, "/case/\(index)", method: shape.method))
            // The server closes after each response; a kept connection must not carry the next request.
            client.closeIdleConnections()
            guard outcome.error == nil, let head = outcome.head else {
                divergences.append("\(shape): \(String(describing: outcome.error))")
                continue
            }
            let body = String(decoding: outcome.body, as: UTF8.self)
            if head.response.status.code != shape.status || body != shape.expectedBody || head.keepAlive != shape.expectedKeepAlive
                || head.version.minor != shape.minor {
                divergences.append("\(shape): status \(head.response.status.code), body \(body.debugDescription), keep-alive \(head.keepAlive)")
            }
            if shape.framing == .chunkedWithExtras && !shape.bodyless && outcome.trailers?[HTTPField.Name("X-Trailer")!] != "t" {
                divergences.append("\(shape): trailers \(String(describing: outcome.trailers))")
            }
        }
        #expect(shapes.count > 800)
        #expect(divergences.isEmpty, "\(divergences.count) of \(shapes.count) shapes read wrongly:\n\(divergences.prefix(20).joined(separator: "\n"))")
        loop.closeAll()
    }
}
