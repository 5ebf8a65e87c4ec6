import Evpl
import Testing
#if canImport(Glibc)
import Glibc
#endif

@Suite("Command line")
struct CommandLineTests {
    @Test("evpl blk --verify over 64 MiB of random writes passes", arguments: [BlockEngine.ioUring, .libaio, .psync].filter { $0.unavailableReason == nil })
    func blockVerify(engine: BlockEngine) throws {
        let path = "/var/tmp/evpl-cli-\(getpid())-\(UniqueName.next()).img"
        defer { unlink(path) }
        let (status, output) = try runEvpl(["blk", "--path", path, "--rw", "randwrite", "--bs", "4096", "--iodepth", "32",
                                            "--size", "\(64 << 20)", "--runtime", "0.5", "--engine", engine.rawValue, "--verify", "--json"])
        #expect(status == 0, "\(output)")
        for key in ["\"iops\":", "\"bytes_per_sec\":", "\"latency_ns\":{", "\"p50\":", "\"p999\":", "\"max\":"] {
            #expect(output.contains(key), "\(key) missing from \(output)")
        }
    }

    @Test("evpl blk ends after --size bytes like fio, and --time-based runs for all of --runtime")
    func blockEndsAtSize() throws {
        let path = "/var/tmp/evpl-cli-\(getpid())-\(UniqueName.next()).img"
        defer { unlink(path) }
        func run(_ extra: [String]) throws -> (operations: Int, seconds: Double) {
            let (status, output) = try runEvpl(["blk", "--path", path, "--bs", "4096", "--engine", "psync", "--json"] + extra)
            try #require(status == 0, "\(output)")
            let number = { (key: String) in output.split(separator: "\"\(key)\":").dropFirst().first.map { Double($0.prefix { "0123456789.".contains($0) }) ?? -1 } ?? -1 }
            return (Int(number("operations")), number("seconds"))
        }
        let sized = try run(["--rw", "write", "--iodepth", "8", "--size", "\(1 << 20)", "--runtime", "60"])
        #expect(sized.operations == 256 && sized.seconds < 30, "\(sized)")
        let deeperThanFile = try run(["--rw", "randread", "--iodepth", "32", "--size", "16384", "--runtime", "60"])
        #expect(deeperThanFile.operations == 4, "\(deeperThanFile)")
        let timed = try run(["--rw", "read", "--iodepth", "4", "--size", "16384", "--runtime", "0.3", "--time-based"])
        #expect(timed.operations > 4 && timed.seconds >= 0.3, "\(timed)")
    }

    @Test("evpl perf client prints one line per second with ops/s, Gbit/s and, for ping-pong, the second's p99 within the run's range")
    func perfProgressLines() throws {
        let server = try EvplServer(["perf", "server", "--port", "0"])
        let port = String(server.address.description.split(separator: ":").last!)
        for mode in ["pingpong", "stream"] {
            let (status, output) = try runEvpl(["perf", "client", "--port", port, "--mode", mode, "--duration", "2.5"])
            try #require(status == 0, "\(output)")
            let seconds = output.split(separator: "\n").filter { $0.hasPrefix("[") }
            #expect(seconds.count == 2, "\(output)")
            for line in seconds {
                let fields = line.split(separator: " ")
                let rate = fields.firstIndex(of: "ops/s").flatMap { Int(fields[$0 - 1]) } ?? 0
                #expect(rate > 0 && line.contains(" Gbit/s"), "\(line)")
                guard mode == "pingpong" else {
                    #expect(!line.contains("p99"), "\(line)")
                    continue
                }
                let p99 = fields.firstIndex(of: "p99").flatMap { Double(fields[$0 + 1].dropLast(2)) } ?? 0
                let latency = output.split(separator: "\n").first { $0.hasPrefix("latency ") }?.split(separator: " ") ?? []
                let minimum = latency.firstIndex(of: "min").flatMap { Double(latency[$0 + 1].dropLast(2)) } ?? .infinity
                let maximum = latency.firstIndex(of: "max").flatMap { Double(latency[$0 + 1].dropLast(2)) } ?? 0
                #expect(p99 > 0 && p99 >= minimum && p99 <= maximum, "\(line) against \(latency)")
            }
        }
        #expect(server.terminate() == 0)
    }

    @Test("evpl perf client --rate sends on its schedule whatever the replies do, finds the server by its port and reports both sides' CPU per request; it refuses a rate outside ping-pong")
    func pacedClient() throws {
        let server = try EvplServer(["perf", "server", "--port", "0"])
        let port = String(server.address.description.split(separator: ":").last!)
        func field(_ name: String, _ output: String) -> Double? {
            output.split(separator: "\"\(name)\":").dropFirst().first.flatMap { Double($0.prefix { "0123456789.e+-".contains($0) }) }
        }
        for arrivals in ["fixed", "poisson"] {
            let (status, output) = try runEvpl(["perf", "client", "--port", port, "--rate", "2000", "--arrivals", arrivals, "--connections", "2",
                                                "--duration", "1", "--json"])
            try #require(status == 0, "\(output)")
            let rate = field("ops_per_sec", output) ?? 0
            // Open loop: the schedule sets the rate, not the round trip.
            #expect(rate > 1_600 && rate < 2_400, "\(arrivals): \(output)")
            let serverCPU = field("server_cpu_ns_per_op", output) ?? 0
            let share = field("server_cpu_share", output) ?? -1
            #expect(serverCPU > 0 && share > 0 && share < 1.5, "\(arrivals): \(output)")
            #expect((field("client_cpu_ns_per_op", output) ?? 0) > 0, "\(arrivals): \(output)")
        }
        let text = try runEvpl(["perf", "client", "--port", port, "--rate", "500", "--duration", "0.5", "--server-pid", "\(server.pid)"])
        #expect(text.status == 0 && text.output.contains("latency (from the schedule)") && text.output.contains("server "), "\(text.output)")
        let refused = try runEvpl(["perf", "client", "--port", port, "--rate", "500", "--mode", "stream", "--duration", "0.2"])
        #expect(refused.status == 1, "stream mode has no schedule: \(refused.output)")
        #expect(server.terminate() == 0)
    }

    @Test("evpl perf local runs both ends in one process over inproc, unix and tcp, in both modes, and reports round trips or bytes; --cpus takes two CPU numbers")
    func perfLocal() throws {
        for transport in ["inproc", "unix", "tcp"] {
            for mode in ["pingpong", "stream"] {
                let (status, output) = try runEvpl(["perf", "local", "--protocol", transport, "--mode", mode, "--duration", "0.5", "--cpus", "0,1", "--json"])
                try #require(status == 0, "\(transport) \(mode): \(output)")
                let operations = output.split(separator: ",").first { $0.contains("\"operations\":") }.flatMap { Int($0.split(separator: ":").last!) } ?? 0
                #expect(operations > 0, "\(transport) \(mode): \(output)")
            }
        }
        let (status, output) = try runEvpl(["perf", "local", "--cpus", "zero", "--duration", "0.1"])
        #expect(status != 0 && output.isEmpty)
    }

    @Test("--api async: a perf client drives an async perf server in both modes; evpl blk verifies 16 MiB through tasks and through a completion stream")
    func asyncAPI() throws {
        let server = try EvplServer(["perf", "server", "--port", "0", "--api", "async"])
        let port = String(server.address.description.split(separator: ":").last!)
        for mode in ["pingpong", "stream"] {
            let (status, output) = try runEvpl(["perf", "client", "--port", port, "--mode", mode, "--depth", "4", "--duration", "0.5", "--api", "async", "--json"])
            try #require(status == 0, "\(output)")
            let rate = output.split(separator: "\"ops_per_sec\":").dropFirst().first.map { Double($0.prefix { "0123456789.".contains($0) }) ?? 0 } ?? 0
            #expect(rate > 100, "\(mode): \(output)")
        }
        #expect(server.terminate() == 0)
        let path = "/var/tmp/evpl-cli-\(getpid())-\(UniqueName.next()).img"
        defer { unlink(path) }
        for api in ["async", "async-stream"] {
            let (status, output) = try runEvpl(["blk", "--path", path, "--rw", "randwrite", "--iodepth", "16", "--size", "\(16 << 20)",
                                                "--runtime", "5", "--engine", "psync", "--verify", "--api", api, "--json"])
            #expect(status == 0, "\(api): \(output)")
            #expect(output.contains("\"operations\":4096"), "\(api): \(output)")
        }
        let refused = try runEvpl(["perf", "client", "--protocol", "udp", "--port", port, "--api", "async", "--duration", "0.2"])
        #expect(refused.status == 1, "udp has no async API: \(refused.output)")
    }

    @Test("--tls: a perf client drives a TLS perf server in both modes with both APIs; one that does not trust its certificate exits 1 naming why")
    func tlsPerf() throws {
        let fixtures = try TLSFixtures.get()
        let server = try EvplServer(["perf", "server", "--port", "0", "--tls", "--tls-cert", fixtures.serverCertificate, "--tls-key", fixtures.serverKey])
        let port = String(server.address.description.split(separator: ":").last!)
        for api in ["callbacks", "async"] {
            for mode in ["pingpong", "stream"] {
                let (status, output) = try runEvpl(["perf", "client", "--port", port, "--mode", mode, "--duration", "0.5", "--api", api, "--json",
                                                    "--tls", "--tls-ca", fixtures.caCertificate, "--tls-verify-host", "localhost"])
                try #require(status == 0, "\(api) \(mode): \(output)")
                let rate = output.split(separator: "\"ops_per_sec\":").dropFirst().first.map { Double($0.prefix { "0123456789.".contains($0) }) ?? 0 } ?? 0
                #expect(rate > 100, "\(api) \(mode): \(output)")
            }
        }
        let untrusting = try runEvpl(["perf", "client", "--port", port, "--duration", "0.5", "--tls", "--tls-ca", fixtures.strangerCertificate])
        #expect(untrusting.status == 1, "\(untrusting.output)")
        #expect(server.terminate() == 0)
    }

    @Test("evpl perf client --mode handshake opens a connection per round trip, plain and over TLS (full or resumed handshakes), and refuses the async API")
    func handshakeMode() throws {
        let fixtures = try TLSFixtures.get()
        let plain = try EvplServer(["perf", "server", "--port", "0"])
        let tls = try EvplServer(["perf", "server", "--port", "0", "--tls", "--tls-cert", fixtures.serverCertificate, "--tls-key", fixtures.serverKey])
        let port = { (server: EvplServer) in String(server.address.description.split(separator: ":").last!) }
        let trust = ["--tls", "--tls-ca", fixtures.caCertificate, "--tls-verify-host", "localhost"]
        for (server, extra) in [(plain, []), (tls, trust), (tls, trust + ["--tls-resume"])] {
            let (status, output) = try runEvpl(["perf", "client", "--port", port(server), "--mode", "handshake", "--connections", "2", "--duration", "0.5", "--json"] + extra)
            try #require(status == 0, "\(extra): \(output)")
            let operations = output.split(separator: "\"operations\":").dropFirst().first.map { Int($0.prefix { $0.isNumber }) ?? 0 } ?? 0
            #expect(operations > 10, "\(extra): \(output)")
        }
        let async = try runEvpl(["perf", "client", "--port", port(plain), "--mode", "handshake", "--api", "async", "--duration", "0.5"])
        #expect(async.status != 0)
        #expect(plain.terminate() == 0 && tls.terminate() == 0)
    }

    @Test("evpl echo --tls-profile modern refuses a TLS 1.2 client and serves a TLS 1.3 one; --tls-profile needs --tls")
    func tlsProfile() throws {
        let fixtures = try TLSFixtures.get()
        let server = try EvplServer(["echo", "--port", "0", "--tls", "--tls-cert", fixtures.serverCertificate, "--tls-key", fixtures.serverKey, "--tls-profile", "modern"])
        let port = String(server.address.description.split(separator: ":").last!)
        let client = "openssl s_client -connect 127.0.0.1:\(port) -servername localhost -CAfile \(fixtures.caCertificate)"
        let (status, output) = try runShell("for version in -tls1_2 -tls1_3; do \(client) $version </dev/null 2>&1 | grep -E '^(New|Reused),'; done")
        #expect(status == 0)
        #expect(output == "New, (NONE), Cipher is (NONE)\nNew, TLSv1.3, Cipher is TLS_AES_128_GCM_SHA256\n", "\(output)")
        #expect(server.terminate() == 0)
        let withoutTLS = try runEvpl(["echo", "--port", "0", "--tls-profile", "modern"])
        #expect(withoutTLS.status == 64, "a usage error: \(withoutTLS.output)")
    }

    @Test("evpl blk reports a missing directory as one error line and exit status 1")
    func blockMissingPath() throws {
        let (status, output) = try runEvpl(["blk", "--path", "/nonexistent-\(getpid())/disk", "--size", "4096", "--runtime", "0.1"])
        #expect(status == 1)
        #expect(output.isEmpty, "errors go to stderr: \(output)")
    }

    @Test("evpl probe --json lists every entry with name, kind, available and reason")
    func probeJSON() throws {
        let (status, output) = try runEvpl(["probe", "--json"])
        #expect(status == 0)
        #expect(output.hasPrefix("[{\"name\":"))
        #expect(output.contains("\"kind\":\"block-engine\""))
        #expect(output.contains("{\"name\":\"io_uring\",\"kind\":\"backend\""))
    }

    @Test("evpl blk-serve answers a byte range with the file's bytes, one crossing the end with the bytes up to it, one past the end with none, an unservable one with EINVAL, and exits 0 on SIGTERM")
    func blockRangeServer() throws {
        let path = "/var/tmp/evpl-serve-\(getpid())-\(UniqueName.next()).img"
        defer { unlink(path) }
        let prefill = try runEvpl(["blk", "--path", path, "--rw", "write", "--size", "\(1 << 20)", "--runtime", "0.2", "--verify", "--engine", "psync"])
        try #require(prefill.status == 0, "\(prefill.output)")
        let (pid, outputFD) = try spawnEvpl(["blk-serve", "--file", path, "--port", "0"])
        defer { close(outputFD) }
        var line: [UInt8] = []
        while line.last != UInt8(ascii: "\n"), case let byte = readExactly(outputFD, 1), !byte.isEmpty { line += byte }
        let text = String(decoding: line, as: UTF8.self)
        try #require(text.hasPrefix("listening on "), "\(text)")
        let address = try SocketAddress(parsing: String(text.dropFirst("listening on ".count).dropLast()))
        let fd = rawConnect(to: address)
        try #require(fd >= 0)
        defer { close(fd) }

        let request = { (offset: UInt64, length: UInt32) in Self.requestRange(on: fd, offset, length) }

        let answer = request(8192, 100_000)
        #expect(answer.status == 0)
        #expect(answer.bytes.count == 100_000)
        // The pattern `evpl blk --verify` writes: one word per 8 bytes, keyed by offset.
        let expectedFirstWord = (UInt64(8192) &* 0x9E37_79B9_7F4A_7C15) ^ 0xD1B5_4A32_D192_ED03
        let firstWord = answer.bytes.prefix(8).enumerated().reduce(UInt64(0)) { $0 | UInt64($1.element) << UInt64(8 * $1.offset) }
        #expect(firstWord == expectedFirstWord)
        let tail = request((1 << 20) - 16, 100)
        #expect(tail.status == 0 && tail.bytes.count == 16, "\(tail.status), \(tail.bytes.count) bytes")
        #expect(VerifyPattern.expected(tail.bytes, at: (1 << 20) - 16))
        for offset in [UInt64(1 << 20), 1 << 30] {
            let past = request(offset, 100)
            #expect(past.status == 0 && past.bytes.isEmpty, "offset \(offset): \(past.status), \(past.bytes.count) bytes")
        }
        // Ranges that cannot be served are EINVAL, and the connection goes on.
        for (offset, length) in [(UInt64(0), UInt32(0)), (0, (16 << 20) + 1), (UInt64(Int64.max), 1), (UInt64.max, 4096)] {
            let rejected = request(offset, length)
            #expect(rejected.status == UInt32(EINVAL) && rejected.bytes.isEmpty, "offset \(offset), length \(length): \(rejected.status)")
        }
        #expect(request(0, 16).bytes.count == 16)
        kill(pid, SIGTERM)
        #expect(exitStatus(of: pid) == 0)
    }

    @Test("evpl blk-serve answers ranges up to the documented 16 MiB whole and in order, one crossing the end with the bytes up to it, and a longer one with EINVAL",
          arguments: [BlockEngine.ioUring, .libaio, .psync].filter { $0.unavailableReason == nil })
    func blockRangeServerLongRanges(engine: BlockEngine) throws {
        let path = "/var/tmp/evpl-serve-\(getpid())-\(UniqueName.next()).img"
        defer { unlink(path) }
        let size = 17 << 20
        let prefill = try runEvpl(["blk", "--path", path, "--rw", "write", "--size", "\(size)", "--bs", "\(1 << 20)", "--runtime", "30", "--verify", "--engine", "psync"])
        try #require(prefill.status == 0, "\(prefill.output)")
        let server = try EvplServer(["blk-serve", "--file", path, "--port", "0", "--engine", engine.rawValue])
        let fd = rawConnect(to: server.address)
        try #require(fd >= 0)
        defer { close(fd) }
        setReceiveTimeout(fd, seconds: 30)
        // 4 MiB + 8 KiB is one buffer more than one block request carries; 16 MiB is the most a request may ask for.
        for (offset, length, expected) in [(UInt64(8192), UInt32((4 << 20) + 8192), (4 << 20) + 8192), (4096, 16 << 20, 16 << 20),
                                           (UInt64(size - (5 << 20) - 8), 16 << 20, (5 << 20) + 8), (UInt64(size - 8), 16 << 20, 8)] {
            let answer = Self.requestRange(on: fd, offset, length)
            #expect(answer.status == 0 && answer.bytes.count == expected, "offset \(offset), length \(length): \(answer.status), \(answer.bytes.count) bytes")
            #expect(VerifyPattern.expected(answer.bytes, at: offset), "offset \(offset), length \(length): not the file's bytes")
        }
        let longer = Self.requestRange(on: fd, 0, (16 << 20) + 1)
        #expect(longer.status == UInt32(EINVAL) && longer.bytes.isEmpty, "\(longer.status)")
        #expect(Self.requestRange(on: fd, 0, 16).bytes.count == 16, "the connection goes on")
        #expect(server.terminate() == 0)
    }

    /// Sends one `blk-serve` request on `fd` and reads its answer: the
    /// status and the bytes that follow the header.
    private static func requestRange(on fd: Int32, _ offset: UInt64, _ length: UInt32) -> (status: UInt32, bytes: [UInt8]) {
        var message: [UInt8] = []
        for shift in stride(from: 56, through: 0, by: -8) { message.append(UInt8(truncatingIfNeeded: offset >> UInt64(shift))) }
        for shift in stride(from: 24, through: 0, by: -8) { message.append(UInt8(truncatingIfNeeded: length >> UInt32(shift))) }
        _ = rawWriteAll(fd, message)
        let header = readExactly(fd, 8)
        guard header.count == 8 else { return (UInt32.max, []) }
        let status = header[0..<4].reduce(UInt32(0)) { $0 << 8 | UInt32($1) }
        let count = header[4..<8].reduce(UInt32(0)) { $0 << 8 | UInt32($1) }
        return (status, readExactly(fd, Int(count)))
    }
}

/// The pattern `evpl blk --verify` writes: one little-endian word per 8
/// bytes, keyed by its file offset.
enum VerifyPattern {
    static func word(at offset: UInt64) -> UInt64 {
        (offset &* 0x9E37_79B9_7F4A_7C15) ^ 0xD1B5_4A32_D192_ED03
    }

    /// Whether `bytes` (starting at a multiple of 8) are the pattern's bytes of the file from `offset`.
    static func expected(_ bytes: [UInt8], at offset: UInt64) -> Bool {
        bytes.withUnsafeBytes { raw in
            var position = 0
            while position < raw.count {
                let word = word(at: offset + UInt64(position)).littleEndian
                let piece = min(8, raw.count - position)
                let matches = withUnsafeBytes(of: word) { memcmp($0.baseAddress!, raw.baseAddress! + position, piece) == 0 }
                if !matches { return false }
                position += 8
            }
            return true
        }
    }
}
