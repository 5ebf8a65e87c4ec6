@testable import Evpl
@testable import EvplHTTP
import HTTPTypes
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// A directory of files for one test, removed with it.
final class FileTree: Sendable {
    let path: String

    init() {
        path = "/tmp/evpl-files-\(getpid())-\(UniqueName.next())"
        mkdir(path, 0o755)
    }

    /// Writes `bytes` to `name` under the tree, with a modification time
    /// in the past so that `If-Modified-Since` tests have a second to spare.
    @discardableResult
    func write(_ name: String, _ bytes: [UInt8], modified: Int = 1_700_000_000) -> String {
        let file = "\(path)/\(name)"
        let fd = open(file, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        precondition(fd >= 0, "cannot create \(file)")
        bytes.withUnsafeBytes { raw in
            var done = 0
            while done < raw.count { done += max(0, Glibc.write(fd, raw.baseAddress! + done, raw.count - done)) }
        }
        var times = [timespec(tv_sec: modified, tv_nsec: 0), timespec(tv_sec: modified, tv_nsec: 0)]
        futimens(fd, &times)
        close(fd)
        return file
    }

    deinit {
        _ = try? runShell("rm -rf '\(path)'")
    }
}

/// `HTTPFileServer` against a strict raw client: the bytes of files and
/// ranges, the validators and conditions of RFC 9110 sections 8.8, 13
/// and 14, and that nothing outside the directory can be read.
@Suite struct HTTPFileServerTests {
    static func randomBytes(_ count: Int) -> [UInt8] {
        var generator = SystemRandomNumberGenerator()
        return (0..<count).map { _ in UInt8.random(in: 0...255, using: &generator) }
    }

    /// Which of the server's APIs answers.
    enum API: String, CaseIterable, Sendable {
        case callbacks
        case async
    }

    static func serve(_ tree: FileTree, backend: EvplProtocol.Backend = .socket, api: API = .callbacks) throws -> HTTPTestServer {
        let files = try HTTPFileServer(root: tree.path)
        switch api {
        case .callbacks:
            return try HTTPTestServer(backend: backend, handler: files.handle)
        case .async:
            return try HTTPTestServer(backend: backend) { request, writer in try await files.respond(to: request, with: writer) }
        }
    }

    @Test("a file spanning several reads arrives whole, with its validators", arguments: StreamCase.backends, API.allCases)
    func wholeFile(backend: EvplProtocol.Backend, api: API) throws {
        let tree = FileTree()
        let content = Self.randomBytes(3 << 20 + 12_345)
        tree.write("data.bin", content)
        tree.write("page.html", Array("<p>hi</p>".utf8))
        let server = try Self.serve(tree, backend: backend, api: api)
        let client = try RawHTTPClient(server.address)
        client.send("GET /data.bin HTTP/1.1\r\nHost: h\r\n\r\nGET /page.html?query=1 HTTP/1.1\r\nHost: h\r\n\r\n")
        let response = try #require(client.readResponse())
        #expect(response.status == 200)
        #expect(response.field("Content-Length") == String(content.count))
        #expect(response.field("Content-Type") == "application/octet-stream")
        #expect(response.field("Accept-Ranges") == "bytes")
        #expect(response.field("Last-Modified") == "Tue, 14 Nov 2023 22:13:20 GMT")
        #expect(response.field("ETag")?.hasPrefix("\"") == true)
        #expect(response.body == content, "the file's bytes differ")
        // Pipelined behind 3 MiB: it is answered after, in order.
        let page = try #require(client.readResponse())
        #expect(page.field("Content-Type") == "text/html")
        #expect(page.body == Array("<p>hi</p>".utf8))
    }

    @Test("Range: one range gets 206 and its bytes; none that overlap, 416; the rest are ignored (RFC 9110 14.2)", arguments: API.allCases)
    func ranges(api: API) throws {
        let tree = FileTree()
        let content = Self.randomBytes(1000)
        tree.write("r.bin", content)
        let server = try Self.serve(tree, api: api)
        let client = try RawHTTPClient(server.address)
        // (Range, status, first byte, last byte) for a 1,000-byte file.
        let cases: [(String, Int, Int, Int)] = [
            ("bytes=0-9", 206, 0, 9),
            ("bytes=990-", 206, 990, 999),
            ("bytes=-5", 206, 995, 999),
            ("bytes=500-5000", 206, 500, 999),
            ("BYTES=1-1", 206, 1, 1),
            ("bytes=-5000", 206, 0, 999),
            ("bytes= 3-4 ,", 206, 3, 4),
            ("bytes=1000-", 416, 0, 0),
            ("bytes=-0", 416, 0, 0),
            ("bytes=9-2", 200, 0, 999),
            ("items=0-1", 200, 0, 999),
            ("bytes=0-1,5-6", 200, 0, 999),
            ("bytes=a-b", 200, 0, 999),
            ("bytes=", 200, 0, 999),
        ]
        for (range, status, first, last) in cases {
            client.send("GET /r.bin HTTP/1.1\r\nHost: h\r\nRange: \(range)\r\n\r\n")
            let response = try #require(client.readResponse(), "no response to Range: \(range)")
            #expect(response.status == status, "Range: \(range)")
            switch status {
            case 206:
                #expect(response.field("Content-Range") == "bytes \(first)-\(last)/1000", "Range: \(range)")
                #expect(response.body == Array(content[first...last]), "Range: \(range)")
            case 416:
                #expect(response.field("Content-Range") == "bytes */1000", "Range: \(range)")
            default:
                #expect(response.field("Content-Range") == nil && response.body == content, "Range: \(range)")
            }
        }
    }

    @Test("conditions: If-None-Match and If-Modified-Since give 304, If-Match and If-Unmodified-Since 412, If-Range picks whole or part")
    func conditions() throws {
        let tree = FileTree()
        tree.write("c.txt", Array("0123456789".utf8))
        let server = try Self.serve(tree)
        let client = try RawHTTPClient(server.address)
        client.send("GET /c.txt HTTP/1.1\r\nHost: h\r\n\r\n")
        let first = try #require(client.readResponse())
        let tag = try #require(first.field("ETag"))
        let modified = try #require(first.field("Last-Modified"))
        // (extra fields, status expected)
        let cases: [(String, Int)] = [
            ("If-None-Match: \(tag)", 304),
            ("If-None-Match: \"other\", W/\(tag)", 304),
            ("If-None-Match: *", 304),
            ("If-None-Match: \"other\"", 200),
            ("If-Modified-Since: \(modified)", 304),
            ("If-Modified-Since: Mon, 13 Nov 2023 00:00:00 GMT", 200),
            ("If-Modified-Since: yesterday", 200),
            // If-None-Match decides alone when both are present (section 13.1.3).
            ("If-None-Match: \"other\"\r\nIf-Modified-Since: \(modified)", 200),
            ("If-Match: \(tag)", 200),
            ("If-Match: W/\(tag)", 412),
            ("If-Match: \"other\"", 412),
            ("If-Unmodified-Since: Mon, 13 Nov 2023 00:00:00 GMT", 412),
            ("If-Unmodified-Since: \(modified)", 200),
            ("Range: bytes=2-3\r\nIf-Range: \(tag)", 206),
            ("Range: bytes=2-3\r\nIf-Range: \(modified)", 206),
            ("Range: bytes=2-3\r\nIf-Range: \"old\"", 200),
            ("Range: bytes=2-3\r\nIf-Range: Mon, 13 Nov 2023 00:00:00 GMT", 200),
        ]
        for (fields, status) in cases {
            client.send("GET /c.txt HTTP/1.1\r\nHost: h\r\n\(fields)\r\n\r\n")
            let response = try #require(client.readResponse(), "no response to \(fields)")
            #expect(response.status == status, "\(fields)")
            if status == 304 {
                #expect(response.field("ETag") == tag && response.field("Last-Modified") == modified, "\(fields)")
            }
            if status == 206 { #expect(response.body == Array("23".utf8), "\(fields)") }
            if status == 200 { #expect(response.body == Array("0123456789".utf8), "\(fields)") }
        }
        // A rewrite changes the tag: the old one no longer matches.
        tree.write("c.txt", Array("changed!".utf8), modified: 1_700_000_100)
        client.send("GET /c.txt HTTP/1.1\r\nHost: h\r\nIf-None-Match: \(tag)\r\n\r\n")
        #expect(client.readResponse()?.body == Array("changed!".utf8))
    }

    @Test("If-Range with the Last-Modified of a file written this second is weak (RFC 9110 8.8.2.2): the whole file, not a range")
    func ifRangeWeakDate() throws {
        let tree = FileTree()
        var now = timespec()
        clock_gettime(CLOCK_REALTIME, &now)
        tree.write("fresh.txt", Array("0123456789".utf8), modified: now.tv_sec + 5)
        let server = try Self.serve(tree)
        let client = try RawHTTPClient(server.address)
        client.send("GET /fresh.txt HTTP/1.1\r\nHost: h\r\n\r\n")
        let modified = try #require(client.readResponse()?.field("Last-Modified"))
        client.send("GET /fresh.txt HTTP/1.1\r\nHost: h\r\nRange: bytes=2-3\r\nIf-Range: \(modified)\r\n\r\n")
        let response = try #require(client.readResponse())
        #expect(response.status == 200 && response.body == Array("0123456789".utf8))
    }

    @Test("nothing outside the directory: dot segments, escapes, NUL, symbolic links out, devices and FIFOs", arguments: API.allCases)
    func confinement(api: API) throws {
        let tree = FileTree()
        let outside = FileTree()
        outside.write("secret", Array("secret".utf8))
        tree.write("inside.txt", Array("inside".utf8))
        mkdir("\(tree.path)/dir", 0o755)
        mkdir("\(tree.path)/bare", 0o755)
        mkdir("\(tree.path)/a b", 0o755)
        tree.write("dir/index.html", Array("index".utf8))
        symlink("\(outside.path)/secret", "\(tree.path)/out")
        symlink("/", "\(tree.path)/slash")
        symlink("inside.txt", "\(tree.path)/alias")
        mkfifo("\(tree.path)/fifo", 0o644)
        symlink("/dev/zero", "\(tree.path)/zero")
        let server = try Self.serve(tree, api: api)
        let client = try RawHTTPClient(server.address)
        let cases: [(String, Int, String?)] = [
            ("/inside.txt", 200, "inside"),
            ("/dir/../inside.txt", 200, "inside"),
            ("/./dir/./index.html", 200, "index"),
            ("/alias", 200, "inside"),
            ("/../inside.txt", 400, nil),
            ("/dir/../../etc/passwd", 400, nil),
            ("/%2e%2e/etc/passwd", 400, nil),
            ("/inside.txt%00.html", 400, nil),
            ("/bad%zz", 400, nil),
            ("/out", 404, nil),
            ("/slash/etc/passwd", 404, nil),
            ("/fifo", 404, nil),
            ("/zero", 404, nil),
            ("/missing", 404, nil),
            ("/inside.txt/", 404, nil),
            ("/dir/", 200, "index"),
            ("/bare/", 404, nil),
            ("/dir", 301, nil),
            // A protocol-relative target must not become a redirect to another host.
            ("//evil.example/../dir", 301, nil),
            ("/a%20b", 301, nil),
        ]
        for (target, status, body) in cases {
            client.send("GET \(target) HTTP/1.1\r\nHost: h\r\n\r\n")
            let response = try #require(client.readResponse(), "no response to \(target)")
            #expect(response.status == status, "\(target)")
            if let body { #expect(response.body == Array(body.utf8), "\(target)") }
            #expect(!String(decoding: response.body, as: UTF8.self).contains("secret"), "\(target) reached outside the root")
            if status == 301 { #expect(response.field("Location") == (target == "/a%20b" ? "/a%20b/" : "/dir/"), "\(target)") }
        }
    }

    @Test("HEAD gets the fields of GET and no body; other methods get 405 with Allow")
    func methods() throws {
        let tree = FileTree()
        tree.write("m.txt", Array("twelve bytes".utf8))
        let server = try Self.serve(tree)
        let client = try RawHTTPClient(server.address)
        client.send("HEAD /m.txt HTTP/1.1\r\nHost: h\r\n\r\n")
        let head = try #require(client.readResponse(method: "HEAD"))
        #expect(head.status == 200 && head.field("Content-Length") == "12" && head.field("ETag") != nil)
        client.send("PUT /m.txt HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nabc")
        let put = try #require(client.readResponse())
        #expect(put.status == 405 && put.field("Allow") == "GET, HEAD")
        // Had HEAD carried a body, this would not read as the file.
        client.send("GET /m.txt HTTP/1.1\r\nHost: h\r\n\r\n")
        #expect(client.readResponse()?.body == Array("twelve bytes".utf8))
    }

    @Test("a client that downloads without reading holds a bounded number of the server's buffers, then gets every byte", arguments: API.allCases)
    func nonReadingClient(api: API) throws {
        let tree = FileTree()
        let size = 48 << 20
        let fd = open("\(tree.path)/big.bin", O_WRONLY | O_CREAT, 0o644)
        ftruncate(fd, off_t(size))
        close(fd)
        let server = try Self.serve(tree, backend: .ioUring, api: api)
        let client = try RawHTTPClient(server.address)
        client.send("GET /big.bin HTTP/1.1\r\nHost: h\r\n\r\n")
        var most = 0
        for _ in 0..<20 {
            usleep(50_000)
            most = max(most, try server.onLoop { $0.bufferPool.buffersInUse - $0.bufferPool.buffersLentToKernel })
        }
        // The send queue's low watermark (256 KiB) plus one read (16 buffers of 64 KiB), and a few to receive.
        #expect(most <= 24, "the server held \(most) buffers for one stalled download")
        #expect(most >= 4, "the server was not sending at all (\(most) buffers in use)")
        let response = try #require(client.readResponse())
        #expect(response.status == 200 && response.body.count == size)
        #expect(response.body.allSatisfy { $0 == 0 })
    }

    @Test("the parsers underneath: byte ranges, entity-tag lists, target paths, IMF-fixdate")
    func parsers() {
        #expect(HTTPByteRange(field: nil, size: 10) == .whole)
        #expect(HTTPByteRange(field: "bytes=0-0", size: 0) == .unsatisfiable)
        #expect(HTTPByteRange(field: "bytes=-1", size: 0) == .unsatisfiable)
        #expect(HTTPByteRange(field: "bytes=18446744073709551616-", size: 10) == .whole)
        #expect(HTTPByteRange(field: "bytes=5-18446744073709551615", size: 10) == .part(first: 5, last: 9))
        #expect(HTTPEntityTag.list("\"a,b\", \"c\"", contains: "\"c\"", weakComparison: false))
        #expect(!HTTPEntityTag.list("\"a,b\"", contains: "\"b\"", weakComparison: false))
        #expect(!HTTPEntityTag.list("\"unterminated", contains: "\"unterminated\"", weakComparison: true))
        #expect(HTTPFilePath(target: "/a//b/./c/")?.relative == "a/b/c")
        #expect(HTTPFilePath(target: "/a//b/./c/")?.namesDirectory == true)
        #expect(HTTPFilePath(target: "/")?.relative == ".")
        #expect(HTTPFilePath(target: "/a/%2E%2E/%2e%2e") == nil)
        #expect(HTTPFilePath(target: "*") == nil)
        #expect(HTTPFilePath(target: "/%41%62c")?.relative == "Abc")
        #expect(HTTPDate.parse("Sun, 06 Nov 1994 08:49:37 GMT") == 784_111_777)
        #expect(HTTPDate.parse("Sunday, 06-Nov-94 08:49:37 GMT") == nil)
        #expect(HTTPDate.parse("Sun, 06 Nov 1994 25:49:37 GMT") == nil)
        #expect(HTTPDate.parse("Sun, 06 Foo 1994 08:49:37 GMT") == nil)
    }
}
