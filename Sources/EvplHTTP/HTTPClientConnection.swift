import Evpl
import HTTPTypes

/// One connection of an ``HTTPClient``: it sends one request at a time and
/// frames the response with ``HTTPResponseDecoder``.
final class HTTPClientConnection {
    /// A request in flight on this connection.
    struct Exchange {
        /// The request and its body, kept to send again on a fresh
        /// connection if a kept one turns out to have been closed.
        let request: HTTPRequest
        let body: [UInt8]
        let handler: HTTPClientHandler
        /// Whether it may be sent twice (RFC 9110 section 9.2.2).
        let idempotent: Bool
        let route: HTTPRoute
        /// Where it goes; `nil` until `name` has been resolved.
        var address: SocketAddress?
        /// The host name and port to resolve, when the authority is not an address.
        let name: (host: String, port: UInt16)?
        /// The writer of a streamed body; `nil` when `body` is the whole of it.
        var writer: HTTPClientRequestWriter?
        /// A streamed body's `Content-Length`; chunked when `nil`.
        var streamedLength: Int?
    }

    let connection: Connection
    let route: HTTPRoute
    private unowned let client: HTTPClient
    private var decoder: HTTPResponseDecoder
    private var pendingFrame: HTTPResponseFrame?
    private(set) var exchange: Exchange?
    /// A byte of the current response has arrived: sending the request again would be wrong.
    private var responseStarted = false
    private var keepAlive = false
    /// The connection served a request before this one.
    private(set) var reused = false
    private var connected = false
    /// The request's bytes, written here and copied into the send queue;
    /// its capacity is kept between requests.
    private var scratch: [UInt8] = []

    init(connection: Connection, route: HTTPRoute, client: HTTPClient) {
        self.connection = connection
        self.route = route
        self.client = client
        decoder = HTTPResponseDecoder(parser: HTTPResponseHeads(), limits: client.configuration.limits)
        connection.segmenter = { [unowned self] bytes in segment(bytes) }
    }

    /// Sends `exchange`'s request; its events go to its handler.
    func send(_ exchange: Exchange) {
        self.exchange = exchange
        responseStarted = false
        decoder.parser.method = exchange.request.method
        // From now: the connect, if any, and the response's head must come within the limit.
        if let timeout = client.configuration.responseTimeout { connection.setMessageDeadline(after: timeout) }
        do {
            writeHead(of: exchange)
            if let writer = exchange.writer {
                try connection.send(scratch)
                try writer.attach(to: self)
            } else if exchange.body.count <= Self.coalescedBodyLimit {
                scratch += exchange.body
                try connection.send(scratch)
            } else {
                try connection.send(scratch)
                try connection.send(exchange.body)
            }
        } catch {
            fail(HTTPClientError(.closedEarly, "the request could not be sent", underlying: error))
            connection.close()
        }
    }

    /// A streamed body moved on: the response's time limit, which covers
    /// the request until the response starts, runs from now again, so an
    /// upload the server keeps taking is not cut off.
    func bodyProgressed() {
        guard !responseStarted, let timeout = client.configuration.responseTimeout else { return }
        connection.setMessageDeadline(after: timeout)
    }

    /// Writes the request's head into ``scratch``: the request line, `Host`
    /// from the authority, the fields (the framing ones left to the body),
    /// `Content-Length` for a body (POST, PUT and PATCH always get one).
    private func writeHead(of exchange: Exchange) {
        let request = exchange.request
        // Built in a local buffer: each append to a class's property would
        // be an exclusivity check at run time.
        var head: [UInt8] = []
        swap(&head, &scratch)
        head.removeAll(keepingCapacity: true)
        head.append(contentsOf: request.method.rawValue.utf8)
        head.append(HTTPSyntax.space)
        head.append(contentsOf: (request.path ?? "/").utf8)
        head.append(" HTTP/1.1\r\nHost: ")
        head.append(contentsOf: exchange.route.authority.utf8)
        head.append("\r\n")
        for field in request.headerFields {
            switch field.name {
            case .contentLength, .transferEncoding: continue
            default: break
            }
            if field.name.canonicalName == "host" { continue }
            head.append(contentsOf: field.name.rawName.utf8)
            head.append(": ")
            head.append(contentsOf: field.value.utf8)
            head.append("\r\n")
        }
        let length: Int?
        if exchange.writer != nil {
            length = exchange.streamedLength
            if length == nil { head.append("Transfer-Encoding: chunked\r\n") }
        } else {
            switch request.method {
            case .post, .put, .patch: length = exchange.body.count
            default: length = exchange.body.isEmpty ? nil : exchange.body.count
            }
        }
        if let length {
            head.append("Content-Length: ")
            head.append(contentsOf: String(length).utf8)
            head.append("\r\n")
        }
        head.append("\r\n")
        swap(&head, &scratch)
    }

    /// Bodies up to this size go out in one copy with their head.
    private static let coalescedBodyLimit = 16 << 10

    private func segment(_ bytes: ReceivedBytes) -> SegmentDecision {
        guard let (frame, length) = decoder.nextFrame(in: bytes) else { return .needMoreBytes }
        pendingFrame = frame
        return .message(length: length)
    }

    /// The connection's handler.
    func handle(_ event: ConnectionEvent) {
        switch event {
        case .connected:
            connected = true
        case .received(let bytes):
            guard let frame = pendingFrame else { return }
            pendingFrame = nil
            received(frame, bytes)
        case .inputClosed:
            guard exchange != nil else { return }
            if decoder.readsUntilClose {
                // The body that ends with the stream has ended.
                keepAlive = false
                complete(trailers: nil)
            } else {
                retryOrFail(HTTPClientError(.closedEarly, "the server ended the stream before the response ended"))
            }
        case .disconnected(let error):
            client.forget(self)
            guard exchange != nil else { return }
            if error?.code == .timedOut {
                fail(HTTPClientError(.timedOut, "no response within \(client.configuration.responseTimeout.map { "\($0)" } ?? "the limit")", underlying: error))
            } else if !connected {
                fail(HTTPClientError(.connect, "\(connection.remoteAddress)", underlying: error))
            } else if error?.code == .aborted {
                // Closed by this side (`close()`, `closeAll()`): nothing to try again.
                fail(HTTPClientError(.closedEarly, "the connection was closed by this side", underlying: error))
            } else {
                retryOrFail(HTTPClientError(.closedEarly, "the connection ended before the response did", underlying: error))
            }
        case .writable:
            guard let writer = exchange?.writer else { return }
            bodyProgressed()
            writer.onWritable?()
        case .sent:
            break
        }
    }

    private func received(_ frame: HTTPResponseFrame, _ bytes: ReceivedBytes) {
        guard let exchange else {
            // Bytes no request asked for: the server's framing cannot be trusted.
            connection.close()
            return
        }
        responseStarted = true
        switch frame {
        case .informational, .framing:
            break
        case .head(let head):
            keepAlive = head.keepAlive
            if let timeout = client.configuration.responseTimeout {
                connection.setMessageDeadline(after: decoder.completesMessage ? nil : timeout)
            }
            exchange.handler(.head(head))
            if decoder.completesMessage { complete(trailers: nil) }
        case .body:
            if let timeout = client.configuration.responseTimeout { connection.setMessageDeadline(after: timeout) }
            exchange.handler(.body(bytes))
            if decoder.completesMessage && self.exchange != nil { complete(trailers: nil) }
        case .end(let trailers):
            complete(trailers: trailers)
        case .failure(let error):
            fail(HTTPClientError(error.kind == .bodyTooLarge ? .bodyTooLarge : .malformedResponse, error.description, parseError: error))
            connection.close()
        }
    }

    /// The response ended: the connection goes back to the pool if both
    /// ends let it, before the handler hears, so that a request the handler
    /// makes can take it.
    private func complete(trailers: HTTPFields?) {
        guard let exchange else { return }
        self.exchange = nil
        connection.setMessageDeadline(after: nil)
        if let writer = exchange.writer {
            // A body still being written when the response ended cannot be
            // finished on this connection, nor another request sent after it.
            if !writer.ended { keepAlive = false }
            writer.detach(HTTPClientError(.closedEarly, "the response ended before the body"))
        }
        if keepAlive && connection.isOpen {
            reused = true
            client.park(self)
        } else {
            connection.finish()
        }
        exchange.handler(.end(trailers: trailers))
    }

    private func fail(_ error: HTTPClientError) {
        guard let exchange else { return }
        self.exchange = nil
        exchange.writer?.detach(error)
        exchange.handler(.failed(error))
    }

    /// A kept connection the server had closed before it read the request:
    /// an idempotent request goes again on a new connection, once.
    private func retryOrFail(_ error: HTTPClientError) {
        guard let exchange else { return }
        if reused && !responseStarted && exchange.idempotent && exchange.writer == nil {
            self.exchange = nil
            client.resend(exchange)
        } else {
            fail(error)
        }
    }
}
