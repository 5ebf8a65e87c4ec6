@testable import Evpl
import EvplHTTP
import HTTPTypes
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// The framing the server writes for what a handler asks (RFC 9112 section
/// 6 and RFC 9110 section 6.4.1), read back by the tests' own strict client.
@Suite struct HTTPResponseFramingTests {
    static func handle(_ exchange: HTTPServerConnection, _ event: HTTPServerEvent) {
        guard case .head(let head) = event else { return }
        var declaredFive = HTTPResponse(status: .ok)
        declaredFive.headerFields[.contentLength] = "5"
        switch head.request.path {
        case "/mismatch":
            do {
                try exchange.respond(declaredFive, body: "abc")
            } catch {
                try? exchange.respond(HTTPResponse(status: .internalServerError), body: "\(error.code)")
            }
        case "/no-content":
            try? exchange.respond(HTTPResponse(status: .noContent), body: "ignored")
        case "/not-modified":
            try? exchange.respond(HTTPResponse(status: .notModified), body: "ignored")
        case "/streamed":
            try? exchange.writeHead(HTTPResponse(status: .ok))
            try? exchange.writeBody(Array("one ".utf8))
            try? exchange.writeBody(Array("two".utf8))
            try? exchange.end(trailers: [HTTPField.Name("X-Trailer")!: "t"])
        case "/short":
            // Declares 5 bytes, writes 3, ends: only closing the connection can tell the client.
            try? exchange.writeHead(declaredFive)
            try? exchange.writeBody(Array("abc".utf8))
            try? exchange.end()
        default:
            try? exchange.respond(HTTPResponse(status: .ok), body: "plain")
        }
    }

    @Test("Content-Length that does not match the body is refused before anything is sent")
    func mismatch() throws {
        let server = try HTTPTestServer(handler: Self.handle)
        let client = try RawHTTPClient(server.address)
        client.send("GET /mismatch HTTP/1.1\r\nHost: h\r\n\r\n")
        let response = client.readResponse()
        #expect(response?.status == 500)
        #expect(response.map { String(decoding: $0.body, as: UTF8.self) } == "invalidArgument")
    }

    @Test("204 and 304 carry no body, and 204 no Content-Length (RFC 9110 15.3.5, 15.4.5)")
    func bodyless() throws {
        let server = try HTTPTestServer(handler: Self.handle)
        let client = try RawHTTPClient(server.address)
        client.send("GET /no-content HTTP/1.1\r\nHost: h\r\n\r\nGET /not-modified HTTP/1.1\r\nHost: h\r\n\r\nGET /after HTTP/1.1\r\nHost: h\r\n\r\n")
        let noContent = client.readResponse()
        #expect(noContent?.status == 204 && noContent?.field("Content-Length") == nil)
        #expect(client.readResponse()?.status == 304)
        // Had either carried a body, this would not parse as the next response.
        #expect(client.readResponse().map { String(decoding: $0.body, as: UTF8.self) } == "plain")
    }

    @Test("a streamed body is chunked to HTTP/1.1 (trailers too) and ends with the connection to HTTP/1.0")
    func streamed() throws {
        let server = try HTTPTestServer(handler: Self.handle)
        let modern = try RawHTTPClient(server.address)
        modern.send("GET /streamed HTTP/1.1\r\nHost: h\r\n\r\n")
        let chunked = modern.readResponse()
        #expect(chunked?.field("Transfer-Encoding") == "chunked")
        #expect(chunked.map { String(decoding: $0.body, as: UTF8.self) } == "one two")
        modern.send("GET /after HTTP/1.1\r\nHost: h\r\n\r\n")
        #expect(modern.readResponse()?.status == 200, "the chunked response did not end where it should")

        let old = try RawHTTPClient(server.address)
        old.send("GET /streamed HTTP/1.0\r\n\r\n")
        let delimited = old.readResponse()
        #expect(delimited?.field("Transfer-Encoding") == nil && delimited?.field("Content-Length") == nil)
        #expect(delimited?.field("Connection") == "close")
        #expect(delimited?.closedAfter == true)
        #expect(delimited.map { String(decoding: $0.body, as: UTF8.self) } == "one two")
    }

    @Test("a body shorter than its Content-Length ends the connection instead of leaving the client waiting")
    func shortBody() throws {
        let server = try HTTPTestServer(handler: Self.handle)
        let client = try RawHTTPClient(server.address, timeoutSeconds: 5)
        client.send("GET /short HTTP/1.1\r\nHost: h\r\n\r\n")
        #expect(client.readResponse() == nil, "a cut-short body read as whole")
        // Closed abortively: the stream ends with a reset, so no client can take the bytes for a whole body.
        #expect(client.peerClosed || client.lastErrno == ECONNRESET, "errno \(client.lastErrno)")
    }
}
