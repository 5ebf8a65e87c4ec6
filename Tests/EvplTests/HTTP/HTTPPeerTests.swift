@testable import Evpl
import EvplHTTP
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// The server against the clients people use: curl and Python's
/// `http.client` and `urllib`. `Scripts/bootstrap.sh` installs them.
@Suite struct HTTPPeerTests {
    private func url(_ server: HTTPTestServer, _ path: String) -> String {
        "http://\(server.address)\(path)"
    }

    /// A file of `count` pattern bytes, and its bytes as the echo handler prints them.
    private func bodyFile(_ count: Int) throws -> (path: String, hex: String) {
        let path = "/tmp/evpl-http-body-\(getpid())-\(UniqueName.next())"
        let bytes = patternBytes(from: 0, count: count)
        let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
        try #require(fd >= 0)
        defer { close(fd) }
        try #require(rawWriteAll(fd, bytes))
        return (path, bytes.map { String(format2: $0) }.joined())
    }

    @Test("curl: two requests reuse one keep-alive connection", arguments: StreamCase.backends)
    func curlKeepAlive(backend: EvplProtocol.Backend) throws {
        let server = try HTTPTestServer(backend: backend)
        let run = try runShell("curl -sS -v \(url(server, "/one")) \(url(server, "/two")) 2>&1")
        #expect(run.status == 0, "\(run.output)")
        #expect(run.output.contains("target=/one") && run.output.contains("target=/two"))
        #expect(run.output.contains("Re-using existing connection"), "curl opened a second connection: \(run.output)")
    }

    @Test("curl: a chunked upload arrives whole, and Expect: 100-continue gets its 100", arguments: StreamCase.backends)
    func curlChunkedUploadWithContinue(backend: EvplProtocol.Backend) throws {
        let server = try HTTPTestServer(backend: backend)
        let (path, hex) = try bodyFile(300_000)
        defer { unlink(path) }
        // -D - prints every response head, the 100 included, before the body.
        let run = try runShell("curl -sS -D - -H 'Transfer-Encoding: chunked' -H 'Expect: 100-continue' --data-binary @\(path) \(url(server, "/up"))")
        #expect(run.status == 0)
        #expect(run.output.hasPrefix("HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\n"), "no 100 Continue before the response")
        #expect(run.output.contains("framing=chunked"))
        #expect(run.output.contains("expect=true"))
        let arrivedWhole = run.output.contains("body=\(hex)\n")
        #expect(arrivedWhole, "the body did not arrive whole")
    }

    @Test("curl: HTTP/1.0 gets Content-Length and Connection: close; HEAD gets no body", arguments: StreamCase.backends)
    func curlHTTP10AndHead(backend: EvplProtocol.Backend) throws {
        let server = try HTTPTestServer(backend: backend)
        let old = try runShell("curl -sS -i --http1.0 \(url(server, "/old"))")
        #expect(old.status == 0)
        #expect(old.output.hasPrefix("HTTP/1.1 200 OK\r\n"))
        #expect(old.output.contains("Connection: close\r\n"))
        #expect(old.output.contains("version=HTTP/1.0"))
        let head = try runShell("curl -sS -I \(url(server, "/h"))")
        #expect(head.status == 0)
        #expect(head.output.contains("Content-Length: "))
        #expect(!head.output.contains("method="), "a HEAD response carried a body")
    }

    @Test("wrk: every response of a second of load is a 200", arguments: StreamCase.backends)
    func wrk(backend: EvplProtocol.Backend) throws {
        let server = try HTTPTestServer(backend: backend)
        let run = try runShell("wrk -t1 -c16 -d1s \(url(server, "/load")) 2>&1")
        #expect(run.status == 0, "\(run.output)")
        #expect(run.output.contains("Requests/sec:"), "\(run.output)")
        #expect(!run.output.contains("Non-2xx"), "\(run.output)")
        #expect(!run.output.contains("Socket errors"), "\(run.output)")
        let requests = run.output.split(separator: "\n").first { $0.contains("requests in") }
            .flatMap { Int($0.split(separator: " ").first ?? "") } ?? 0
        #expect(requests > 1000, "\(run.output)")
    }

    @Test("Python http.client and urllib: keep-alive, a chunked body, a streamed response", arguments: StreamCase.backends)
    func python(backend: EvplProtocol.Backend) throws {
        let server = try HTTPTestServer(backend: backend)
        let script = """
        import http.client, sys, urllib.request
        host, port = sys.argv[1], int(sys.argv[2])
        c = http.client.HTTPConnection(host, port, timeout=10)
        for i in range(3):
            c.request("GET", f"/k{i}")
            r = c.getresponse()
            body = r.read().decode()
            assert r.status == 200 and f"target=/k{i}" in body, body
        assert c.sock is not None, "the connection was not kept"
        c.request("POST", "/chunked", body=iter([b"ab", b"cd", b"ef"]), encode_chunked=True)
        r = c.getresponse()
        body = r.read().decode()
        assert "framing=chunked" in body and "body=616263646566" in body, body
        c.request("GET", "/s", headers={"X-Respond": "stream"})
        r = c.getresponse()
        assert r.getheader("Transfer-Encoding") == "chunked", r.getheaders()
        assert "target=/s" in r.read().decode()
        with urllib.request.urlopen(f"http://{host}:{port}/urllib", timeout=10) as u:
            assert u.status == 200 and "target=/urllib" in u.read().decode()
        print("ok")
        """
        let path = "/tmp/evpl-http-client-\(getpid())-\(UniqueName.next()).py"
        let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
        try #require(fd >= 0)
        try #require(rawWriteAll(fd, Array(script.utf8)))
        close(fd)
        defer { unlink(path) }
        let port = server.address.port!
        let run = try runShell("python3 \(path) 127.0.0.1 \(port) 2>&1")
        #expect(run.status == 0 && run.output == "ok\n", "\(run.output)")
    }
}

extension HTTPPeerTests {
    @Test("curl over TLS: evpl http serve --tls agrees on http/1.1 by ALPN and serves keep-alive requests", arguments: StreamCase.backends)
    func curlOverTLS(backend: EvplProtocol.Backend) throws {
        let fixtures = try TLSFixtures.get()
        let server = try EvplServer(["http", "serve", "--port", "0", "--backend", backend.rawValue, "--tls",
                                     "--tls-cert", fixtures.serverCertificate, "--tls-key", fixtures.serverKey])
        let url = "https://localhost:\(server.address.port!)"
        let run = try runShell("curl -sS -v --cacert \(fixtures.caCertificate) --resolve localhost:\(server.address.port!):127.0.0.1 \(url)/a \(url)/b 2>&1")
        #expect(run.status == 0, "\(run.output)")
        #expect(run.output.contains("ALPN: server accepted http/1.1") || run.output.contains("ALPN, server accepted to use http/1.1"), "\(run.output)")
        #expect(run.output.ranges(of: "hello world").count == 2, "two answers expected: \(run.output)")
        #expect(run.output.contains("Re-using existing connection"), "\(run.output)")
        #expect(server.terminate() == 0)
    }

    @Test("evpl http get over TLS offers http/1.1 by ALPN to evpl http serve --tls and checks the certificate", arguments: StreamCase.backends)
    func clientOverTLS(backend: EvplProtocol.Backend) throws {
        let fixtures = try TLSFixtures.get()
        let server = try EvplServer(["http", "serve", "--port", "0", "--backend", backend.rawValue, "--tls",
                                     "--tls-cert", fixtures.serverCertificate, "--tls-key", fixtures.serverKey])
        let url = "https://127.0.0.1:\(server.address.port!)/x"
        let get = try runEvpl(["http", "get", url, "--backend", backend.rawValue, "--tls-ca", fixtures.caCertificate,
                               "--tls-verify-host", "localhost", "--repeat", "3"])
        #expect(get.status == 0 && get.output.hasSuffix("hello world"), "\(get.output)")
        // A certificate the client was not told to trust: no request goes out.
        let untrusted = try runEvpl(["http", "get", url, "--backend", backend.rawValue, "--tls-verify-host", "localhost"])
        #expect(untrusted.status == 1 && !untrusted.output.contains("hello world"), "\(untrusted.output)")
        // The wrong name: refused as well.
        let misnamed = try runEvpl(["http", "get", url, "--backend", backend.rawValue, "--tls-ca", fixtures.caCertificate,
                                    "--tls-verify-host", "elsewhere.example"])
        #expect(misnamed.status == 1, "\(misnamed.output)")
        #expect(server.terminate() == 0)
    }

    @Test("curl over a Unix socket: evpl http serve --protocol unix answers keep-alive requests", arguments: StreamCase.backends)
    func curlOverUnixSocket(backend: EvplProtocol.Backend) throws {
        let path = "/tmp/evpl-http-\(getpid())-\(UniqueName.next()).sock"
        defer { unlink(path) }
        let server = try EvplServer(["http", "serve", "--protocol", "unix", "--path", path, "--backend", backend.rawValue])
        let run = try runShell("curl -sS -v --unix-socket \(path) http://localhost/a http://localhost/b 2>&1")
        #expect(run.status == 0, "\(run.output)")
        #expect(run.output.ranges(of: "hello world").count == 2, "two answers expected: \(run.output)")
        #expect(run.output.contains("Re-using existing connection"), "\(run.output)")
        #expect(server.terminate() == 0)
    }
}
