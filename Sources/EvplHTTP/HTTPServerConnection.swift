import Evpl
import HTTPTypes

/// One connection served as HTTP/1.0 and 1.1: it frames requests out of the
/// byte stream, hands them to the handler as ``HTTPServerEvent``s, and
/// writes the responses with the framing RFC 9112 asks for.
///
/// Requests are answered one at a time, in order: once a request has been
/// read, the next one (pipelined or not) waits in the receive buffers until
/// the response to this one has ended. A response can be written at once
/// from the handler, or later from the loop's thread, whole
/// (``respond(_:body:)-(_,UnsafeRawBufferPointer)``) or streamed (``writeHead(_:)``,
/// ``writeBody(copying:)``, ``end(trailers:)``).
///
/// The library decides the framing: every response gets a `Date`; a body
/// of known length gets `Content-Length`, a streamed one the chunked coding
/// (or, toward an HTTP/1.0 client, the end of the connection); HEAD, 1xx,
/// 204 and 304 responses carry no body; `Connection: close` from the client
/// ends the connection after the response. A request that cannot be read
/// gets the status ``HTTPParseError/status`` names, then the connection
/// closes.
public final class HTTPServerConnection {
    /// The connection underneath: its address, its flow control, its timeouts.
    public let connection: Connection
    /// The request being answered, from its head until its response ends.
    public private(set) var request: HTTPRequestHead?
    /// The application's state for this connection (the connection's own
    /// `Connection.context` holds the HTTP layer).
    public var context: AnyObject?
    /// Called when the send queue drains below the low watermark (the async
    /// writer waits for it).
    var onWritable: (() -> Void)?

    private let handler: HTTPServerHandler
    private var decoder: HTTPRequestDecoder
    private let headTimeout: Duration?
    private let bodyTimeout: Duration?
    /// The current head's deadline is set.
    private var headDeadlineSet = false
    private var pendingFrame: HTTPRequestFrame?
    private var date = HTTPDate()
    /// The response head being built; its capacity is kept between responses.
    private var scratch: [UInt8] = []

    private enum ResponseState {
        /// No response started for the current request.
        case none
        /// Head written; body bytes go out as they are, in chunks, or not at all.
        case body(BodyCoding)
        /// Ended.
        case complete
    }

    fileprivate enum BodyCoding {
        case length(remaining: Int)
        case chunked
        case closeDelimited
        case none
    }

    private var response = ResponseState.none
    private var requestComplete = false
    /// The current request is a HEAD: its response carries no body.
    private var bodylessMethod = false
    /// The rest of the body is read and dropped: the response came first.
    private var discardingBody = false
    private var continueSent = false
    /// The connection ends once the current response has.
    private var closeAfterResponse = false
    private var pausedBetweenRequests = false
    private var peerEnded = false
    /// The last response has ended; the connection is finishing.
    private var finishing = false
    /// Bytes read and dropped since.
    private var lingeringBytes = 0
    /// The most bytes read and dropped after the last response before the
    /// connection is closed outright: more than the kernel's socket buffers
    /// on both ends hold, so that a client uploading past a 413 has read
    /// it before the reset that ends its upload.
    private static let lingerLimit = 16 << 20

    /// Serves `connection` as HTTP: sets its segmenter and handler, so call
    /// it where a listener's new connection is set up (`EventLoop.attach(to:_:)`).
    @discardableResult
    public static func serve(_ connection: Connection, configuration: HTTPServerConfiguration = .init(), handler: @escaping HTTPServerHandler) -> HTTPServerConnection {
        let server = HTTPServerConnection(connection: connection, configuration: configuration, handler: handler)
        connection.context = server
        connection.finishesWhenInputCloses = false
        connection.segmenter = { [unowned server] bytes in server.segment(bytes) }
        connection.handler = { connection, event in
            guard let server = connection.context as? HTTPServerConnection else { return }
            server.handle(event)
        }
        return server
    }

    private init(connection: Connection, configuration: HTTPServerConfiguration, handler: @escaping HTTPServerHandler) {
        self.connection = connection
        self.handler = handler
        decoder = HTTPRequestDecoder(parser: HTTPRequestHeads(), limits: configuration.limits)
        headTimeout = configuration.headTimeout
        bodyTimeout = configuration.bodyTimeout
        scratch.reserveCapacity(256)
    }

    // MARK: Reading requests

    private func segment(_ bytes: ReceivedBytes) -> SegmentDecision {
        if finishing {
            // RFC 9112 section 9.6: nothing after the last response is
            // processed. Reading it on keeps the close orderly (closing with
            // unread input resets the stream, and the response with it),
            // but only for so long: a client still uploading is cut off.
            lingeringBytes += bytes.count
            guard lingeringBytes <= Self.lingerLimit else { return .failure("still sending \(Self.lingerLimit) bytes after the last response") }
            pendingFrame = .framing
            return .message(length: bytes.count)
        }
        if decoder.isBetweenMessages && !headDeadlineSet, let headTimeout {
            // The first byte of a head: from now it has `headTimeout` to end.
            headDeadlineSet = true
            connection.setMessageDeadline(after: headTimeout)
        }
        guard let (frame, length) = decoder.nextFrame(in: bytes) else { return .needMoreBytes }
        pendingFrame = frame
        return .message(length: length)
    }

    private func handle(_ event: ConnectionEvent) {
        switch event {
        case .received(let bytes):
            guard let frame = pendingFrame else { return }
            pendingFrame = nil
            received(frame, bytes)
        case .inputClosed:
            peerEnded = true
            if finishing || (request == nil && decoder.isBetweenMessages) {
                finish()
            } else if !requestComplete {
                // The request was cut short: there is nothing to answer.
                connection.close()
            }
        case .writable:
            onWritable?()
            handler(self, .writable)
        case .sent, .connected:
            break
        case .disconnected(let error):
            connection.context = nil
            handler(self, .closed(error))
        }
    }

    private func received(_ frame: HTTPRequestFrame, _ bytes: ReceivedBytes) {
        switch frame {
        case .head(let head):
            headDeadlineSet = false
            connection.setMessageDeadline(after: head.bodyFraming == .none ? nil : bodyTimeout)
            request = head
            // swift-http-types parses the method from its field on every read: once here.
            bodylessMethod = head.request.method == .head
            requestComplete = false
            discardingBody = false
            continueSent = false
            response = .none
            closeAfterResponse = !head.keepAlive
            handler(self, .head(head))
            guard connection.isOpen else { return }
            if decoder.completesMessage {
                requestEnded(trailers: nil)
            } else if head.expectsContinue, case .none = response {
                continueSent = true
                sendRaw(Self.continueResponse)
            }
        case .body:
            if bodyTimeout != nil { connection.setMessageDeadline(after: bodyTimeout) }
            if !discardingBody { handler(self, .body(bytes)) }
            if decoder.completesMessage && connection.isOpen { requestEnded(trailers: nil) }
        case .framing, .informational:
            break
        case .end(let trailers):
            requestEnded(trailers: trailers)
        case .failure(let error):
            refuse(error)
        }
    }

    private func requestEnded(trailers: HTTPFields?) {
        requestComplete = true
        if bodyTimeout != nil { connection.setMessageDeadline(after: nil) }
        if !discardingBody { handler(self, .end(trailers: trailers)) }
        // A response ended from the handler has moved on to the next request already.
        guard connection.isOpen, request != nil else { return }
        if case .complete = response {
            nextRequest()
        } else {
            pausedBetweenRequests = true
            connection.pauseReceiving()
        }
    }

    /// The application stops taking the body for a while (the async body's
    /// window is full): the connection stops reading, and the body timeout,
    /// which is for clients that stall, stops with it.
    func pauseBody() {
        connection.pauseReceiving()
        connection.setMessageDeadline(after: nil)
    }

    /// Undoes ``pauseBody()``.
    func resumeBody() {
        guard !connection.isClosed else { return }
        connection.resumeReceiving()
        if !requestComplete, let bodyTimeout { connection.setMessageDeadline(after: bodyTimeout) }
    }

    /// After a response and its request have both ended.
    private func nextRequest() {
        request = nil
        response = .none
        if closeAfterResponse || peerEnded {
            finish()
            return
        }
        if pausedBetweenRequests {
            pausedBetweenRequests = false
            connection.resumeReceiving()
        }
    }

    /// Answers a request that cannot be read, then closes.
    private func refuse(_ error: HTTPParseError) {
        guard case .none = response else {
            // A response is under way: the stream has lost its framing.
            connection.close()
            return
        }
        closeAfterResponse = true
        requestComplete = true
        if request == nil { bodylessMethod = false }
        request = request ?? HTTPRequestHead(request: HTTPRequest(method: .get, scheme: nil, authority: nil, path: nil), version: .http1_1, keepAlive: false)
        let body = Array("\(error.status.code) \(error.status.reasonPhrase)\n".utf8)
        var head = HTTPResponse(status: error.status)
        head.headerFields[.contentType] = "text/plain"
        try? startResponse(head, bodyLength: body.count)
        body.withUnsafeBytes { writeBodyBytes($0) }
        try? end(trailers: nil)
    }

    // MARK: Writing responses

    /// Sends `response` with `body` as one message: `Content-Length` is
    /// the body's (unless the response sets it), and the head and a short
    /// body share one copy into the send queue.
    ///
    /// - Throws: `EvplError` `.invalidState` when a response was already
    ///   started or the connection is over, or the connection's send error
    ///   (the connection is then closed: a response cut short cannot be framed).
    public func respond(_ response: HTTPResponse, body: UnsafeRawBufferPointer) throws(EvplError) {
        try checkNoResponse()
        try startResponse(response, bodyLength: body.count)
        writeBodyBytes(body)
        try end(trailers: nil)
    }

    /// Sends `response` with `body` (UTF-8) as one message.
    public func respond(_ response: HTTPResponse, body: String = "") throws(EvplError) {
        var body = body
        let result = body.withUTF8 { bytes in
            Result { () throws(EvplError) in try respond(response, body: UnsafeRawBufferPointer(bytes)) }
        }
        try result.get()
    }

    /// Starts a response whose body follows in ``writeBody(copying:)``
    /// calls: with the response's own `Content-Length` if it sets one,
    /// otherwise chunked (or, to an HTTP/1.0 client, ended by closing).
    ///
    /// - Throws: `EvplError` `.invalidState` when a response was already
    ///   started or the connection is over; `.invalidArgument` for a 1xx status.
    public func writeHead(_ response: HTTPResponse) throws(EvplError) {
        try checkNoResponse()
        guard response.status.kind != .informational else {
            throw EvplError(.invalidArgument, operation: "writeHead", context: "\(response.status): 1xx responses are sent by the server itself")
        }
        try startResponse(response, bodyLength: nil)
        try checkSent()
    }

    /// Sends a copy of `bytes` as the next piece of the body (nothing, for
    /// a response that has none, such as one to HEAD).
    ///
    /// - Throws: `EvplError` `.invalidState` outside a streamed response
    ///   or past its `Content-Length`, or the connection's send error.
    public func writeBody(copying bytes: UnsafeRawBufferPointer) throws(EvplError) {
        guard case .body(let coding) = response else {
            throw EvplError(.invalidState, operation: "writeBody", context: "no response head written, or the response has ended")
        }
        if case .length(let remaining) = coding, bytes.count > remaining {
            throw EvplError(.invalidState, operation: "writeBody", context: "\(bytes.count) bytes where Content-Length leaves \(remaining)")
        }
        writeBodyBytes(bytes)
        try checkSent()
    }

    /// Sends a copy of `bytes` as the next piece of the body.
    public func writeBody(_ bytes: [UInt8]) throws(EvplError) {
        let result = bytes.withUnsafeBytes { raw in
            Result { () throws(EvplError) in try writeBody(copying: raw) }
        }
        try result.get()
    }

    /// Sends pooled memory as the next piece of the body without copying it
    /// (block-device reads, say), taking over the caller's reference to each
    /// IOVec: they are released once written, or at once for a response
    /// that carries no body (one to HEAD). A streamed body of any length
    /// keeps at most the connection's send queue in memory when the handler
    /// waits for ``HTTPServerEvent/writable`` once `Connection.queuedBytes`
    /// reaches the loop's low watermark.
    ///
    /// - Throws: `EvplError` `.invalidState` outside a streamed response
    ///   or past its `Content-Length` (the IOVecs are released), or the
    ///   connection's send error.
    public func writeBody(taking iovecs: [IOVec]) throws(EvplError) {
        guard case .body(let coding) = response else {
            for iovec in iovecs { iovec.release() }
            throw EvplError(.invalidState, operation: "writeBody", context: "no response head written, or the response has ended")
        }
        var count = 0
        for iovec in iovecs { count += iovec.length }
        if case .length(let remaining) = coding, count > remaining {
            for iovec in iovecs { iovec.release() }
            throw EvplError(.invalidState, operation: "writeBody", context: "\(count) bytes where Content-Length leaves \(remaining)")
        }
        if !scratch.isEmpty { sendScratch() }
        switch coding {
        case .none:
            for iovec in iovecs { iovec.release() }
        case .length(let remaining):
            response = .body(.length(remaining: remaining - count))
            send(taking: iovecs)
        case .chunked:
            guard count > 0 else {
                for iovec in iovecs { iovec.release() }
                break
            }
            scratch += String(count, radix: 16).utf8
            scratch += Self.crlf
            sendScratch()
            send(taking: iovecs)
            sendRaw(Self.crlf)
        case .closeDelimited:
            send(taking: iovecs)
        }
        try checkSent()
    }

    /// Ends the response: the last chunk and `trailers` for a chunked body;
    /// a body shorter than its `Content-Length` closes the connection
    /// instead, as nothing else could tell the client it was cut short.
    ///
    /// - Throws: `EvplError` `.invalidState` when no response is under way.
    public func end(trailers: HTTPFields? = nil) throws(EvplError) {
        guard case .body(let coding) = response else {
            throw EvplError(.invalidState, operation: "end", context: "no response under way")
        }
        response = .complete
        switch coding {
        case .chunked:
            scratch.removeAll(keepingCapacity: true)
            scratch += Self.lastChunk
            if let trailers {
                for field in trailers { Self.append(field, to: &scratch) }
            }
            scratch += Self.crlf
            sendScratch()
        case .length(let remaining) where remaining > 0:
            connection.close()
            return
        case .closeDelimited:
            closeAfterResponse = true
        default:
            break
        }
        try checkSent()
        if requestComplete {
            nextRequest()
        } else if closeAfterResponse {
            finish()
        }
    }

    /// Ends the connection after the last response: what the peer still
    /// sends is read and dropped.
    private func finish() {
        finishing = true
        connection.finish()
        if pausedBetweenRequests {
            pausedBetweenRequests = false
            connection.resumeReceiving()
        }
    }

    /// A send that failed closed the connection; the caller hears why.
    private var sendFailure: EvplError?

    private func checkSent() throws(EvplError) {
        if let sendFailure { throw sendFailure }
    }

    private func checkNoResponse() throws(EvplError) {
        guard connection.isOpen, request != nil else {
            throw EvplError(.invalidState, operation: "respond", context: "no request to answer, or the connection is over")
        }
        guard case .none = response else {
            throw EvplError(.invalidState, operation: "respond", context: "a response was already started")
        }
    }

    /// Writes the head of `response` and decides how its body is framed.
    ///
    /// - Throws: `EvplError` `.invalidArgument` when the response's own
    ///   `Content-Length` is not the whole body's length; nothing is sent.
    private func startResponse(_ response: HTTPResponse, bodyLength: Int?) throws(EvplError) {
        // swift-http-types parses the status from its field on every read.
        let responseStatus = response.status
        let status = responseStatus.code
        let reasonPhrase = responseStatus.reasonPhrase
        let answersHead = bodylessMethod
        let noBody = bodyless(status)
        let declared = response.headerFields[.contentLength].flatMap { Int($0) }
        if let declared, let bodyLength, declared != bodyLength, !noBody {
            throw EvplError(.invalidArgument, operation: "respond", context: "Content-Length \(declared) with a body of \(bodyLength) bytes")
        }
        if !requestComplete {
            // The rest of the body is dropped; a client still waiting for 100 Continue never sends it.
            discardingBody = true
            if request?.expectsContinue == true && !continueSent { closeAfterResponse = true }
        }
        let coding: BodyCoding
        if noBody {
            coding = .none
        } else if let length = declared ?? bodyLength {
            coding = .length(remaining: length)
        } else if request?.version == .http1_1 {
            coding = .chunked
        } else {
            coding = .closeDelimited
            closeAfterResponse = true
        }
        if response.headerFields[.connection]?.lowercased().contains("close") == true { closeAfterResponse = true }

        date.update()
        // Built in a local buffer: each append to a class's property would
        // be an exclusivity check at run time.
        var head: [UInt8] = []
        swap(&head, &scratch)
        head.removeAll(keepingCapacity: true)
        head.append("HTTP/1.1 ")
        head.append(UInt8(ascii: "0") + UInt8(status / 100))
        head.append(UInt8(ascii: "0") + UInt8(status / 10 % 10))
        head.append(UInt8(ascii: "0") + UInt8(status % 10))
        head.append(UInt8(ascii: " "))
        head.append(contentsOf: reasonPhrase.utf8)
        head.append("\r\n")
        var hasDate = false
        for field in response.headerFields {
            switch field.name {
            case .transferEncoding, .connection: continue
            case .contentLength where status == 204 || (100..<200).contains(status): continue
            case .date: hasDate = true
            default: break
            }
            Self.append(field, to: &head)
        }
        if !hasDate {
            head.append("Date: ")
            head.append(contentsOf: date.bytes)
            head.append("\r\n")
        }
        switch coding {
        case .length(let length) where declared == nil:
            head.append("Content-Length: ")
            head.append(contentsOf: String(length).utf8)
            head.append("\r\n")
        case .none where declared == nil && bodyLength != nil && answersHead:
            // HEAD gets the length a GET would have had.
            head.append("Content-Length: ")
            head.append(contentsOf: String(bodyLength!).utf8)
            head.append("\r\n")
        case .chunked:
            head.append("Transfer-Encoding: chunked\r\n")
        default:
            break
        }
        if closeAfterResponse {
            head.append("Connection: close\r\n")
        } else if request?.version == .http1_0 {
            head.append("Connection: keep-alive\r\n")
        }
        head.append("\r\n")
        swap(&head, &scratch)
        self.response = .body(coding)
        // A whole short response goes out in one copy with its body (``writeBodyBytes``).
        if bodyLength == nil || bodyLength! > Self.coalescedBodyLimit || !(coding.sendsBytes) { sendScratch() }
    }

    /// Whether a response with `status` to the current request carries no
    /// body whatever is written (RFC 9110 sections 9.3.2, 15.3.5, 15.4.5).
    private func bodyless(_ status: Int) -> Bool {
        bodylessMethod || status == 204 || status == 304 || (100..<200).contains(status)
    }

    /// Sends body bytes as the coding asks. The head may still sit in
    /// `scratch` (a whole short response): it goes out with them.
    private func writeBodyBytes(_ bytes: UnsafeRawBufferPointer) {
        guard case .body(let coding) = response else { return }
        switch coding {
        case .none:
            if !scratch.isEmpty { sendScratch() }
        case .length(let remaining):
            response = .body(.length(remaining: remaining - bytes.count))
            if !scratch.isEmpty && bytes.count <= Self.coalescedBodyLimit {
                scratch.append(contentsOf: bytes)
                sendScratch()
            } else {
                if !scratch.isEmpty { sendScratch() }
                if bytes.count > 0 { send(bytes) }
            }
        case .chunked:
            guard bytes.count > 0 else { return }
            scratch.removeAll(keepingCapacity: true)
            scratch += String(bytes.count, radix: 16).utf8
            scratch += Self.crlf
            scratch.append(contentsOf: bytes)
            scratch += Self.crlf
            sendScratch()
        case .closeDelimited:
            if bytes.count > 0 { send(bytes) }
        }
    }

    private static func append(_ field: HTTPField, to bytes: inout [UInt8]) {
        bytes.append(contentsOf: field.name.rawName.utf8)
        bytes.append(": ")
        bytes.append(contentsOf: field.value.utf8)
        bytes.append("\r\n")
    }

    private func sendScratch() {
        scratch.withUnsafeBytes { send($0) }
        scratch.removeAll(keepingCapacity: true)
    }

    private func sendRaw(_ bytes: [UInt8]) {
        bytes.withUnsafeBytes { send($0) }
    }

    private func send(taking iovecs: [IOVec]) {
        guard sendFailure == nil else {
            for iovec in iovecs { iovec.release() }
            return
        }
        do {
            try connection.send(taking: iovecs)
        } catch {
            sendFailure = error
            connection.close()
        }
    }

    private func send(_ bytes: UnsafeRawBufferPointer) {
        guard sendFailure == nil else { return }
        do {
            try connection.send(copying: bytes)
        } catch {
            sendFailure = error
            connection.close()
        }
    }

    // The fixed pieces of a response head.
    private static let crlf = Array("\r\n".utf8)
    private static let lastChunk = Array("0\r\n".utf8)
    private static let continueResponse = Array("HTTP/1.1 100 Continue\r\n\r\n".utf8)
    /// Bodies up to this size go out in one copy with their head.
    private static let coalescedBodyLimit = 16 << 10
}

extension HTTPServerConnection.BodyCoding {
    /// Whether body bytes are written at all.
    fileprivate var sendsBytes: Bool {
        if case .none = self { return false }
        return true
    }
}
