import Evpl
import HTTPTypes

/// The body of a request sent with ``HTTPClient/stream(_:bodyLength:handler:)``,
/// written in pieces as the application has them: chunked, or exactly
/// the `Content-Length` given.
///
/// Each piece is copied into the connection's send queue at once. To keep
/// an upload of any size in bounded memory, write while ``queuedBytes`` is
/// under the loop's high watermark and otherwise wait for ``onWritable``.
/// A streamed request is never sent twice: a kept connection found closed
/// fails it with `.closedEarly`.
public final class HTTPClientRequestWriter {
    /// The connection the request went out on, while its exchange lasts.
    weak var owner: HTTPClientConnection?
    /// Whether the request has a connection yet: until its host name
    /// resolves it has none, and written pieces wait in ``pending``.
    private var attached = false
    /// Body bytes written before the request had a connection, framed.
    private var pending: [UInt8] = []
    /// Bytes `Content-Length` still expects; `nil` for a chunked body.
    private var remaining: Int?
    private var failure: HTTPClientError?
    private var scratch: [UInt8] = []
    /// Whether ``end(trailers:)`` was called.
    public private(set) var ended = false
    /// Called on the loop when the connection's send queue falls below the
    /// loop's low watermark: write the next pieces.
    public var onWritable: (() -> Void)?

    init(bodyLength: Int?) {
        remaining = bodyLength
    }

    /// Bytes written and not yet taken by the kernel (or, before the
    /// request has a connection, held until it has one).
    public var queuedBytes: Int { attached ? owner?.connection.queuedBytes ?? 0 : pending.count }

    /// The request went out on `connection`: what was written meanwhile follows it.
    func attach(to connection: HTTPClientConnection) throws(EvplError) {
        guard failure == nil else {
            // Abandoned while its host name resolved: the request cannot be completed.
            connection.connection.close()
            return
        }
        owner = connection
        attached = true
        guard !pending.isEmpty else { return }
        let held = pending
        pending = []
        try connection.connection.send(held)
        connection.bodyProgressed()
    }

    /// Sends a copy of `bytes` as the next piece of the body.
    ///
    /// - Throws: ``HTTPClientError`` `.invalidRequest` after ``end(trailers:)``
    ///   or past the `Content-Length`; the request's failure (`.closedEarly`
    ///   once the response has ended or the connection has gone).
    public func write(_ bytes: [UInt8]) throws(HTTPClientError) {
        try checkOpen()
        if let remaining {
            guard bytes.count <= remaining else {
                throw HTTPClientError(.invalidRequest, "\(bytes.count) bytes where Content-Length leaves \(remaining)")
            }
            self.remaining = remaining - bytes.count
            try send(bytes)
        } else if !bytes.isEmpty {
            scratch.removeAll(keepingCapacity: true)
            scratch.append(contentsOf: String(bytes.count, radix: 16).utf8)
            scratch.append("\r\n")
            scratch.append(contentsOf: bytes)
            scratch.append("\r\n")
            try send(scratch)
        }
    }

    /// Ends the body: the last chunk and `trailers` for a chunked one.
    ///
    /// - Throws: ``HTTPClientError`` `.invalidRequest` for a body short of
    ///   its `Content-Length` (the request is abandoned: its connection
    ///   closes, and the handler hears `.closedEarly`), or the request's failure.
    public func end(trailers: HTTPFields? = nil) throws(HTTPClientError) {
        try checkOpen()
        ended = true
        if let remaining {
            guard remaining == 0 else {
                owner?.connection.close()
                if owner == nil { detach(HTTPClientError(.invalidRequest, "the body ended short of its Content-Length")) }
                throw HTTPClientError(.invalidRequest, "the body ended \(remaining) bytes short of its Content-Length")
            }
            return
        }
        scratch.removeAll(keepingCapacity: true)
        scratch.append("0\r\n")
        for field in trailers ?? [:] {
            scratch.append(contentsOf: field.name.rawName.utf8)
            scratch.append(": ")
            scratch.append(contentsOf: field.value.utf8)
            scratch.append("\r\n")
        }
        scratch.append("\r\n")
        try send(scratch)
    }

    /// The request is over (its response ended, or it failed): later
    /// writes throw `error`.
    func detach(_ error: HTTPClientError) {
        owner = nil
        attached = true
        pending = []
        if failure == nil { failure = error }
        onWritable = nil
    }

    private func checkOpen() throws(HTTPClientError) {
        if let failure { throw failure }
        guard !ended else { throw HTTPClientError(.invalidRequest, "the body has ended") }
        guard !attached || owner != nil else { throw HTTPClientError(.closedEarly, "the request is over") }
    }

    private func send(_ bytes: [UInt8]) throws(HTTPClientError) {
        guard attached else {
            pending += bytes
            return
        }
        guard let owner else { throw HTTPClientError(.closedEarly, "the request is over") }
        do {
            try owner.connection.send(bytes)
        } catch {
            throw HTTPClientError(.closedEarly, "the body could not be sent", underlying: error)
        }
        owner.bodyProgressed()
    }
}
