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

    @Test("evpl http serve --api async answers like the callbacks")
    func serveAsync() throws {
        let server = try EvplServer(["http", "serve", "--port", "0", "--api", "async"])
        let get = try runEvpl(["http", "get", "http://\(server.address)/x"])
        #expect(get.output.hasSuffix("\r\nContent-Length: 11\r\n\r\nhello world"), "\(get.output)")
        let post = try runEvpl(["http", "get", "http://\(server.address)/x", "--method", "POST", "--data", "body"])
        #expect(post.output.hasSuffix("hello world"), "\(post.output)")
        #expect(server.terminate() == 0)
    }

    @Test("evpl http serve --root: curl downloads a file whole and by range, and resumes one cut short", arguments: StreamCase.backends, ["callbacks", "async"])
    func serveRootToCurl(backend: EvplProtocol.Backend, api: String) throws {
        let tree = FileTree()
        let content = HTTPFileServerTests.randomBytes(2 << 20 + 7)
        let source = tree.write("file.bin", content)
        let server = try EvplServer(["http", "serve", "--port", "0", "--backend", backend.rawValue, "--root", tree.path, "--api", api])
        let url = "http://\(server.address)/file.bin"
        let whole = try runShell("curl -sS -o \(tree.path)/whole \(url) && cmp \(source) \(tree.path)/whole && echo same")
        #expect(whole.output.hasSuffix("same\n"), "\(whole.output)")
        let part = try runShell("curl -sS -r 1000-1999 -o \(tree.path)/part \(url) && cmp -n 1000 -i 1000:0 \(source) \(tree.path)/part && wc -c < \(tree.path)/part")
        #expect(part.output.trimmingCharacters(in: " \n") == "1000", "\(part.output)")
        // curl -C -: resume from what the file holds, by a Range request.
        let resumed = try runShell("head -c 12345 \(source) > \(tree.path)/resumed && curl -sS -C - -o \(tree.path)/resumed \(url) && cmp \(source) \(tree.path)/resumed && echo same")
        #expect(resumed.output.hasSuffix("same\n"), "\(resumed.output)")
        #expect(server.terminate() == 0)
    }
}

extension HTTPCommandTests {
    /// A run as short as this once trapped converting an infinite rate to
    /// `Int` (SIGILL in CI's coverage build); rates too short to time print `-`.
    @Test("evpl demo prints a row per protocol, the HTTP rows and the block engines, and exits 0")
    func demo() throws {
        let run = try runEvpl(["demo", "--seconds", "0.2"])
        #expect(run.status == 0, "\(run.output)")
        let rows = run.output.split(separator: "\n").map(String.init)
        let http = rows.filter { $0.hasPrefix("http/") }
        #expect(http.count == StreamCase.backends.count, "\(run.output)")
        for row in http {
            let cells = row.split(separator: " ", omittingEmptySubsequences: true)
            #expect(cells.count == 8 && (Int(cells[4]) ?? 0) > 0, "an HTTP row without requests: \(row)")
        }
        #expect(rows.contains { $0.hasPrefix("tcp/") } && rows.contains { $0.hasPrefix("blk/") })
    }
}
