import CEvplLinux
import Evpl
import HTTPTypes
#if canImport(Glibc)
import Glibc
#endif

/// Serves the regular files under one directory: GET and HEAD, a single
/// byte range (`206`, `416`), `ETag` with `If-Match`, `If-None-Match` and
/// `If-Range`, `Last-Modified` with `If-Modified-Since` and
/// `If-Unmodified-Since` (RFC 9110 sections 13 and 14).
///
/// A body is read by the block engine into the loop's pool buffers and sent
/// as those buffers, without a copy; the next read waits until the peer has
/// taken what is queued (``HTTPServerEvent/writable``), so a client that
/// downloads without reading holds about `EvplConfig.sendLowWatermark`
/// plus one read (1 MiB) of server memory.
///
/// No file outside the directory is reachable: `..` cannot climb above it,
/// and every file is opened with `openat2(2)` and `RESOLVE_BENEATH`, so a
/// symbolic link that leads out is refused like a missing file. A
/// directory is answered with its `index.html` (after a `301` to the path
/// with a trailing `/`), never with a listing; devices, FIFOs and sockets
/// are not served.
///
/// One server can serve every loop: it holds only the directory's
/// descriptor. Use ``handle(_:_:)`` as the `HTTPServerHandler`, or call it
/// from one for the requests it should answer; while it streams a file it
/// keeps its state in ``HTTPServerConnection/context``.
public final class HTTPFileServer: Sendable {
    /// The directory served, as given.
    public let root: String
    /// How files are read.
    public let engine: BlockEngine
    private let rootDescriptor: Int32

    /// Opens `root` for serving.
    ///
    /// - Parameters:
    ///   - root: the directory whose files are served.
    ///   - engine: the block engine that reads files; `nil` picks io_uring
    ///     where this machine has it, otherwise psync.
    /// - Throws: `EvplError` naming `root` when it is missing or not a directory.
    public init(root: String, engine: BlockEngine? = nil) throws(EvplError) {
        let fd = open(root, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard fd >= 0 else { throw EvplError(errno: errno, operation: "open", context: root) }
        self.root = root
        self.rootDescriptor = fd
        self.engine = engine ?? (BlockEngine.ioUring.unavailableReason == nil ? .ioUring : .psync)
    }

    deinit {
        close(rootDescriptor)
    }

    /// Answers the events of one connection: each request's head gets its
    /// response, a file's body follows as the connection takes it.
    public func handle(_ exchange: HTTPServerConnection, _ event: HTTPServerEvent) {
        switch event {
        case .head(let head):
            answer(head, on: exchange)
        case .writable:
            (exchange.context as? HTTPFileTransfer)?.continueReading()
        case .closed:
            (exchange.context as? HTTPFileTransfer)?.cancel()
        case .body, .end:
            break
        }
    }

    // MARK: Answering

    /// What a request gets: a response without a file body, or a head and
    /// bytes `first..<end` of an open file.
    enum Answer {
        case respond(HTTPResponse, body: String)
        case file(HTTPResponse, descriptor: Int32, name: String, first: UInt64, end: UInt64)
    }

    private func answer(_ head: HTTPRequestHead, on exchange: HTTPServerConnection) {
        switch plan(head.request) {
        case .respond(let response, let body):
            try? exchange.respond(response, body: body)
        case .file(let response, let fd, let name, let first, let end):
            let device: BlockDevice
            do {
                device = try exchange.connection.loop.openBlockDevice(adopting: fd, name: name, engine: engine)
            } catch {
                refuse(.internalServerError, on: exchange)
                return
            }
            do {
                try exchange.writeHead(response)
            } catch {
                device.close()
                return
            }
            let transfer = HTTPFileTransfer(exchange: exchange, device: device, from: first, to: end)
            exchange.context = transfer
            transfer.continueReading()
        }
    }

    /// Answers `request` from an async handler (`EventLoop.serveHTTP(from:configuration:respond:)`):
    /// the same answers as ``handle(_:_:)``, a file's body read into pool
    /// buffers with `BlockDevice`'s async reads and written with
    /// ``HTTPResponseWriter/write(taking:)``, which waits while the client
    /// is behind. Call it on the loop's thread, from the request's task.
    ///
    /// - Throws: `EvplError` when the connection ends or a read fails
    ///   mid-body (the connection is then closed by the server).
    nonisolated(nonsending) public func respond(to request: HTTPServerRequest, with writer: HTTPResponseWriter) async throws(EvplError) {
        switch plan(request.head.request) {
        case .respond(let response, let body):
            try writer.respond(response, body: Array(body.utf8))
        case .file(let response, let fd, let name, let first, let end):
            let loop = writer.loop
            let device = try loop.openBlockDevice(adopting: fd, name: name, engine: engine)
            defer { device.close() }
            try writer.writeHead(response)
            var offset = first
            while offset < end {
                // As the callbacks do: read only once the client has taken all but the low watermark.
                try await writer.waitWhileBehind(limit: loop.config.sendLowWatermark)
                var chunk = HTTPFileTransfer.buffers(for: offset..<end, from: loop.bufferPool)
                guard !chunk.isEmpty else { throw EvplError(.resourceExhausted, operation: "read", context: "\(name): the buffer pool is spent") }
                let read: Int
                do {
                    read = try await device.read(into: chunk, at: offset)
                } catch {
                    for iovec in chunk { iovec.release() }
                    throw error
                }
                guard read > 0 else {
                    for iovec in chunk { iovec.release() }
                    throw EvplError(.invalidState, operation: "read", context: "\(name) ended at \(offset), before \(end)")
                }
                HTTPFileTransfer.trim(&chunk, to: read)
                offset += UInt64(read)
                try await writer.write(taking: chunk)
            }
            try writer.end()
        }
    }

    /// Decides the answer to `request`, opening the file it names.
    func plan(_ request: HTTPRequest) -> Answer {
        guard request.method == .get || request.method == .head else {
            var refusal = HTTPResponse(status: .methodNotAllowed)
            refusal.headerFields[.allow] = "GET, HEAD"
            return .respond(refusal, body: "")
        }
        guard let target = request.path, let path = HTTPFilePath(target: target) else {
            return Self.refusal(.badRequest)
        }
        let fd: Int32
        var info: stat
        switch lookUp(path) {
        case .file(let descriptor, let status):
            fd = descriptor
            info = status
        case .directoryWithoutSlash:
            // From the normalized path, never the target as sent: `//host/../dir`
            // would otherwise redirect to another host (protocol-relative).
            var redirect = HTTPResponse(status: .movedPermanently)
            let query = target.firstIndex(of: "?").map { target[$0...] } ?? ""
            redirect.headerFields[.location] = "/" + path.percentEncoded + "/" + query
            return .respond(redirect, body: "")
        case .refused(let status):
            return Self.refusal(status)
        }
        let size = UInt64(info.st_size)
        let modified = info.st_mtim.tv_sec
        let tag = HTTPEntityTag.make(size: size, modifiedSeconds: modified, modifiedNanoseconds: info.st_mtim.tv_nsec)
        var validators = HTTPFields()
        validators[.eTag] = tag
        validators[.lastModified] = Self.httpDate(modified)

        let fields = request.headerFields
        if let status = Self.preconditionFailure(fields, tag: tag, modified: modified) {
            close(fd)
            var response = HTTPResponse(status: status)
            if status == .notModified { response.headerFields.append(contentsOf: validators) }
            return .respond(response, body: "")
        }
        var range = HTTPByteRange(field: request.method == .get ? fields[.range] : nil, size: size)
        if range != .whole, let condition = fields[.ifRange],
           !Self.ifRangeHolds(condition, tag: tag, lastModified: validators[.lastModified]!, modified: modified) {
            range = .whole
        }

        var response = HTTPResponse(status: .ok)
        response.headerFields[.contentType] = HTTPMediaType.forFile(named: path.relative == "." ? "index.html" : path.relative)
        response.headerFields[.acceptRanges] = "bytes"
        response.headerFields.append(contentsOf: validators)
        var first: UInt64 = 0
        var end = size
        switch range {
        case .whole:
            break
        case .part(let from, let last):
            response.status = .partialContent
            response.headerFields[.contentRange] = "bytes \(from)-\(last)/\(size)"
            first = from
            end = last + 1
        case .unsatisfiable:
            close(fd)
            var refusal = HTTPResponse(status: .rangeNotSatisfiable)
            refusal.headerFields[.contentRange] = "bytes */\(size)"
            return .respond(refusal, body: "")
        }
        response.headerFields[.contentLength] = String(end - first)
        guard request.method == .get, end > first else {
            close(fd)
            return .respond(response, body: "")
        }
        return .file(response, descriptor: fd, name: path.relative, first: first, end: end)
    }

    private static func refusal(_ status: HTTPResponse.Status) -> Answer {
        var response = HTTPResponse(status: status)
        response.headerFields[.contentType] = "text/plain"
        return .respond(response, body: "\(status.code) \(status.reasonPhrase)\n")
    }

    private func refuse(_ status: HTTPResponse.Status, on exchange: HTTPServerConnection) {
        if case .respond(let response, let body) = Self.refusal(status) { try? exchange.respond(response, body: body) }
    }

    // MARK: Finding the file

    private enum Lookup {
        case file(Int32, stat)
        /// A directory named without its trailing `/`: relative links in its
        /// index would resolve against its parent.
        case directoryWithoutSlash
        case refused(HTTPResponse.Status)
    }

    private static let openFlags = O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY

    /// Opens the file `path` names, beneath the root. `O_NONBLOCK` keeps a
    /// FIFO from blocking the loop in `open`; it is taken off a regular file
    /// before the file is read.
    private func lookUp(_ path: HTTPFilePath) -> Lookup {
        var fd = cevpl_open_beneath(rootDescriptor, path.relative, Self.openFlags)
        guard fd >= 0 else { return .refused(Self.status(forErrno: -fd)) }
        var info = stat()
        guard fstat(fd, &info) == 0 else {
            close(fd)
            return .refused(.internalServerError)
        }
        if info.st_mode & S_IFMT == S_IFDIR {
            guard path.namesDirectory || path.relative == "." else {
                close(fd)
                return .directoryWithoutSlash
            }
            let index = cevpl_open_beneath(fd, "index.html", Self.openFlags)
            close(fd)
            guard index >= 0 else { return .refused(Self.status(forErrno: -index)) }
            fd = index
            guard fstat(fd, &info) == 0 else {
                close(fd)
                return .refused(.internalServerError)
            }
        } else if path.namesDirectory {
            close(fd)
            return .refused(.notFound)
        }
        guard info.st_mode & S_IFMT == S_IFREG else {
            close(fd)
            return .refused(.notFound)
        }
        _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK)
        return .file(fd, info)
    }

    /// The answer to a failed open: a path that leaves the root (`EXDEV`)
    /// or loops reads as missing, so that nothing outside is revealed.
    private static func status(forErrno code: Int32) -> HTTPResponse.Status {
        switch code {
        case ENOENT, ENOTDIR, EXDEV, ELOOP, ENAMETOOLONG: .notFound
        case EACCES, EPERM: .forbidden
        case EMFILE, ENFILE, ENOMEM: .serviceUnavailable
        default: .internalServerError
        }
    }

    // MARK: Conditions

    /// What RFC 9110 section 13.2.2 decides before the method runs: `412`
    /// for a failed `If-Match` or `If-Unmodified-Since`, `304` for a
    /// matching `If-None-Match` or an unchanged `If-Modified-Since`, or `nil`
    /// to go on. (Only GET and HEAD reach here.)
    private static func preconditionFailure(_ fields: HTTPFields, tag: String, modified: Int) -> HTTPResponse.Status? {
        if let condition = fields[values: .ifMatch].joinedList {
            if !HTTPEntityTag.list(condition, contains: tag, weakComparison: false) { return .preconditionFailed }
        } else if let date = fields[.ifUnmodifiedSince].flatMap({ HTTPDate.parse(Substring($0)) }), modified > date {
            return .preconditionFailed
        }
        if let condition = fields[values: .ifNoneMatch].joinedList {
            if HTTPEntityTag.list(condition, contains: tag, weakComparison: true) { return .notModified }
        } else if let date = fields[.ifModifiedSince].flatMap({ HTTPDate.parse(Substring($0)) }), modified <= date {
            return .notModified
        }
        return nil
    }

    /// `If-Range` (section 13.1.5): the range applies only to the
    /// representation named, by a strong tag or by exactly its
    /// `Last-Modified`, and a date is strong only for a file unchanged for
    /// a second or more (section 8.8.2.2): two writes within the second
    /// share a `Last-Modified`.
    private static func ifRangeHolds(_ condition: String, tag: String, lastModified: String, modified: Int) -> Bool {
        if condition.hasPrefix("\"") || condition.hasPrefix("W/") {
            return HTTPEntityTag.list(condition, contains: tag, weakComparison: false)
        }
        var now = timespec()
        clock_gettime(CLOCK_REALTIME, &now)
        return condition == lastModified && now.tv_sec > modified
    }

    private static func httpDate(_ seconds: Int) -> String {
        var bytes = [UInt8](repeating: 0, count: 29)
        HTTPDate.format(secondsSinceEpoch: seconds, into: &bytes)
        return String(decoding: bytes, as: UTF8.self)
    }
}

extension Array where Element == String {
    /// The values of a list field given on several lines, as one list; `nil` for none.
    fileprivate var joinedList: String? {
        isEmpty ? nil : joined(separator: ", ")
    }
}
