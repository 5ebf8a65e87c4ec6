import Evpl
import Testing
#if canImport(Glibc)
import Glibc
#endif

@Suite("evpl http")
struct HTTPCommandTests {
    @Test("evpl http serve answers evpl http get (GET, HEAD, POST) and exits 0 on SIGTERM", arguments: StreamCase.backends)
    func serveAndGet(backend: EvplProtocol.Backend) throws {
        let server = try EvplServer(["http", "serve", "--port", "0", "--backend", backend.rawValue])
        let url = "http://\(server.address)/x"
        let get = try runEvpl(["http", "get", url, "--backend", backend.rawValue])
        #expect(get.status == 0)
        #expect(get.output.hasPrefix("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nDate: "), "\(get.output)")
        #expect(get.output.hasSuffix("\r\nContent-Length: 11\r\n\r\nhello world"), "\(get.output)")
        let head = try runEvpl(["http", "get", url, "--method", "HEAD"])
        #expect(head.status == 0)
        #expect(head.output.hasSuffix("Content-Length: 11\r\n\r\n"), "a HEAD response carried a body: \(head.output)")
        let post = try runEvpl(["http", "get", url, "--method", "POST", "--data", "some body"])
        #expect(post.output.hasSuffix("hello world"))
        let refused = try runEvpl(["http", "get", url, "--method", "DELETE"])
        #expect(refused.output.hasPrefix("HTTP/1.1 405 Method Not Allowed\r\n"))
        #expect(refused.output.contains("Allow: GET, HEAD, POST, PUT\r\n"))
        #expect(server.terminate() == 0)
        let nothing = try runEvpl(["http", "get", url])
        #expect(nothing.status == 1, "a request to a closed port succeeded")
    }
}

