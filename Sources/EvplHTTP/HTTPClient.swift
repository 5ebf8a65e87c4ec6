import Evpl
import HTTPTypes
#if canImport(Glibc)
import Glibc
#endif

/// An HTTP/1.1 client on one event loop, with a pool of kept-alive
/// connections per host and port.
///
/// Requests are swift-http-types' `HTTPRequest`s: `authority` names the
/// host and port, `path` the target. A connection carries one request at a
/// time; concurrent requests to one host open more connections, and the
/// pool keeps up to ``HTTPClientConfiguration/idleConnectionsPerHost`` of
/// them once their responses end. A kept connection the server closed
/// meanwhile is noticed when a request on it fails before any response
/// byte: an idempotent request is then sent again, once, on a new
/// connection. Everything happens on the loop's thread.
public final class HTTPClient {
    /// The loop every connection runs on.
    public let loop: EventLoop
    /// How connections are made and responses read.
    public let configuration: HTTPClientConfiguration
    /// Kept connections by authority. A list is a class that stays in the
    /// dictionary once emptied, so that taking and parking a connection
    /// only reads the dictionary and allocates nothing.
    private var idle: [HTTPRoute: IdleConnections] = [:]
    /// Resolved authorities.
    private var addresses: [HTTPRoute: SocketAddress] = [:]
    /// Requests waiting for their authority's name to resolve, by authority.
    private var resolving: [HTTPRoute: [HTTPClientConnection.Exchange]] = [:]

    /// A client on `loop` (call it on the loop's thread).
    public init(loop: EventLoop, configuration: HTTPClientConfiguration = .init()) {
        self.loop = loop
        self.configuration = configuration
    }

    /// Kept-alive connections waiting for a request, over every host.
    public var idleConnectionCount: Int { idle.values.reduce(0) { $0 + $1.connections.count } }

    /// Sends `request` with `body` and reports the response to `handler`,
    /// on the loop. A body goes with its `Content-Length` (POST, PUT and
    /// PATCH always get one). The request's `Host` is its `authority`.
    public func execute(_ request: HTTPRequest, body: [UInt8] = [], handler: @escaping HTTPClientHandler) {
        let exchange: HTTPClientConnection.Exchange
        do {
            exchange = try self.exchange(request, body: body, handler: handler)
        } catch {
            handler(.failed(error))
            return
        }
        send(exchange, reusing: true)
    }

    /// Sends `request`'s head now and returns the writer of its body, which
    /// goes out as it is written: with `bodyLength` as `Content-Length`, or
    /// chunked without one. The response is reported to `handler` as for
    /// ``execute(_:body:handler:)``, and may come before the body ends (a
    /// server refusing an upload); the writer's later writes then throw.
    @discardableResult
    public func stream(_ request: HTTPRequest, bodyLength: Int? = nil, handler: @escaping HTTPClientHandler) -> HTTPClientRequestWriter {
        let writer = HTTPClientRequestWriter(bodyLength: bodyLength)
        var exchange: HTTPClientConnection.Exchange
        do {
            exchange = try self.exchange(request, body: [], handler: handler)
        } catch {
            writer.detach(error)
            handler(.failed(error))
            return writer
        }
        exchange.writer = writer
        exchange.streamedLength = bodyLength
        send(exchange, reusing: true)
        return writer
    }

    /// Sends `request` with `body` and returns the whole response. Call it
    /// from a task running on the loop (`Task(executorPreference:
    /// loop.executor)`).
    ///
    /// - Throws: ``HTTPClientError``: the request's failure, `.bodyTooLarge`
    ///   past ``HTTPLimits/body``, `.cancelled` when the task is cancelled.
    nonisolated(nonsending) public func execute(_ request: HTTPRequest, body: [UInt8] = []) async throws(HTTPClientError) -> HTTPClientResponse {
        let state = AsyncExchange(loop: loop)
        let limit = configuration.limits.body
        execute(request, body: body) { event in
            switch event {
            case .head(let head):
                state.head = head
            case .body(let bytes):
                guard state.result == nil else { return }
                if state.body.count + bytes.count > limit {
                    state.result = .failure(HTTPClientError(.bodyTooLarge, "more than \(limit) bytes"))
                    state.waiter.resume()
                    return
                }
                bytes.forEachSegment { state.body.append(contentsOf: $0) }
            case .end(let trailers):
                guard state.result == nil, let head = state.head else { return }
                state.result = .success(HTTPClientResponse(head: head, body: state.body, trailers: trailers))
                state.waiter.resume()
            case .failed(let error):
                guard state.result == nil else { return }
                state.result = .failure(error)
                state.waiter.resume()
            }
        }
        while state.result == nil {
            do throws(EvplError) {
                try await state.waiter.wait("HTTP response")
            } catch {
                throw HTTPClientError(error.code == .timedOut ? .timedOut : .cancelled, error.description, underlying: error)
            }
        }
        return try state.result!.get()
    }

    /// Closes every kept-alive connection; requests in flight go on.
    public func closeIdleConnections() {
        let connections = idle.values.flatMap(\.connections)
        idle.removeAll()
        for client in connections { client.connection.finish() }
    }

    // MARK: The pool

    func send(_ exchange: HTTPClientConnection.Exchange, reusing: Bool) {
        if reusing, let connection = idle[exchange.route]?.connections.popLast() {
            connection.send(exchange)
            return
        }
        guard let address = exchange.address else {
            resolve(exchange, name: exchange.name!)
            return
        }
        do {
            // The connection's context holds the client connection (no cycle through the handler).
            let connection = try loop.connect(to: address, protocol: configuration.evplProtocol) { connection, event in
                (connection.context as? HTTPClientConnection)?.handle(event)
            }
            let client = HTTPClientConnection(connection: connection, route: exchange.route, client: self)
            connection.context = client
            client.send(exchange)
        } catch {
            let failure = HTTPClientError(.connect, "\(address)", underlying: error)
            exchange.writer?.detach(failure)
            exchange.handler(.failed(failure))
        }
    }

    /// Sends an exchange again on a new connection.
    func resend(_ exchange: HTTPClientConnection.Exchange) {
        send(exchange, reusing: false)
    }

    /// Keeps a connection whose response ended, while the pool has room.
    func park(_ connection: HTTPClientConnection) {
        let kept: IdleConnections
        if let existing = idle[connection.route] {
            kept = existing
        } else {
            kept = IdleConnections()
            idle[connection.route] = kept
        }
        guard kept.connections.count < configuration.idleConnectionsPerHost else {
            connection.connection.finish()
            return
        }
        kept.connections.append(connection)
    }

    /// A connection ended: it leaves the pool.
    func forget(_ connection: HTTPClientConnection) {
        connection.connection.context = nil
        guard let kept = idle[connection.route], let index = kept.connections.firstIndex(where: { $0 === connection }) else { return }
        kept.connections.remove(at: index)
    }

    // MARK: Requests on the wire

    /// The request, checked, and where it goes. Addresses are resolved
    /// once per authority and kept for the client's life.
    func exchange(_ request: HTTPRequest, body: [UInt8], handler: @escaping HTTPClientHandler) throws(HTTPClientError) -> HTTPClientConnection.Exchange {
        guard let authority = request.authority, !authority.isEmpty else {
            throw HTTPClientError(.invalidRequest, "no authority (host and port) in the request")
        }
        guard request.scheme != "https" || configuration.evplProtocol.security != nil else {
            throw HTTPClientError(.invalidRequest, "an https request needs a TLS protocol in HTTPClientConfiguration (EvplTLS), and this client has none")
        }
        // The scheme picks the default port: "example.org" is not one place for http and https.
        let route = HTTPRoute(authority: authority, secure: request.scheme == "https")
        var address: SocketAddress?
        var name: (host: String, port: UInt16)?
        if let known = addresses[route] {
            address = known
        } else {
            let defaultPort: UInt16 = request.scheme == "https" ? 443 : 80
            let (host, port) = try Self.hostAndPort(authority, defaultPort: defaultPort)
            if Self.isLiteral(host) {
                do {
                    address = try SocketAddress(host: host, port: port)
                } catch {
                    throw HTTPClientError(.invalidRequest, "\(authority) is not an address", underlying: error)
                }
                addresses[route] = address
            } else {
                name = (host, port)
            }
        }
        let idempotent: Bool
        switch request.method {
        case .get, .head, .put, .delete, .options, .trace: idempotent = true
        default: idempotent = false
        }
        return HTTPClientConnection.Exchange(request: request, body: body, handler: handler, idempotent: idempotent,
                                             route: route, address: address, name: name, writer: nil, streamedLength: nil)
    }

    /// Whether `host` is an IPv4 or IPv6 literal, which resolves without a lookup.
    private static func isLiteral(_ host: String) -> Bool {
        var v4 = in_addr()
        var v6 = in6_addr()
        return inet_pton(AF_INET, host, &v4) == 1 || inet_pton(AF_INET6, host, &v6) == 1
    }

    /// Resolves `name` on a thread of its own (`getaddrinfo` blocks), then
    /// sends the requests that waited for it, on the loop; the first
    /// request for an authority starts it, the others wait with it.
    private func resolve(_ exchange: HTTPClientConnection.Exchange, name: (host: String, port: UInt16)) {
        let key = exchange.route
        if resolving[key] != nil {
            resolving[key]!.append(exchange)
            return
        }
        resolving[key] = [exchange]
        let remote = loop.remote
        let client = LoopBound(value: WeakClient(self))
        do {
            let thread = try LoopThread.spawn(name: "evpl-resolve") {
                let result = Result { () throws(EvplError) in try SocketAddress(host: name.host, port: name.port) }
                remote.execute { _ in client.value.client?.resolved(key, result) }
            }
            pthread_detach(thread)
        } catch {
            resolved(key, .failure(error))
        }
    }

    private func resolved(_ key: HTTPRoute, _ result: Result<SocketAddress, EvplError>) {
        let waiting = resolving.removeValue(forKey: key) ?? []
        switch result {
        case .success(let address):
            addresses[key] = address
            for var exchange in waiting {
                exchange.address = address
                send(exchange, reusing: true)
            }
        case .failure(let error):
            let failure = HTTPClientError(.invalidRequest, "\(key.authority) does not resolve", underlying: error)
            for exchange in waiting {
                exchange.writer?.detach(failure)
                exchange.handler(.failed(failure))
            }
        }
    }

    /// `host[:port]`, with IPv6 literals in brackets.
    package static func hostAndPort(_ authority: String, defaultPort: UInt16) throws(HTTPClientError) -> (String, UInt16) {
        var host = Substring(authority)
        var port = defaultPort
        if let at = host.lastIndex(of: "@") { host = host[host.index(after: at)...] }
        if host.hasPrefix("[") {
            guard let close = host.firstIndex(of: "]") else { throw HTTPClientError(.invalidRequest, "an unclosed IPv6 literal in \(authority)") }
            let rest = host[host.index(after: close)...]
            host = host[host.index(after: host.startIndex)..<close]
            if rest.hasPrefix(":") {
                guard let parsed = UInt16(rest.dropFirst()) else { throw HTTPClientError(.invalidRequest, "port of \(authority)") }
                port = parsed
            }
        } else if let colon = host.lastIndex(of: ":") {
            guard let parsed = UInt16(host[host.index(after: colon)...]) else { throw HTTPClientError(.invalidRequest, "port of \(authority)") }
            port = parsed
            host = host[..<colon]
        }
        return (String(host), port)
    }
}

/// Where requests go: an authority, and whether over TLS (which decides
/// the default port). Pooled connections and resolved addresses are kept
/// by route.
struct HTTPRoute: Hashable {
    var authority: String
    var secure: Bool
}

/// The client a name resolution reports to, if it is still there.
private final class WeakClient {
    weak var client: HTTPClient?
    init(_ client: HTTPClient) { self.client = client }
}

/// The kept connections to one authority.
private final class IdleConnections {
    var connections: [HTTPClientConnection] = []
}

/// The state an awaited request fills in, on the loop.
private final class AsyncExchange {
    let waiter: SuspendedTask
    var head: HTTPResponseHead?
    var body: [UInt8] = []
    var result: Result<HTTPClientResponse, HTTPClientError>?

    init(loop: EventLoop) {
        waiter = SuspendedTask(loop: loop)
    }
}
