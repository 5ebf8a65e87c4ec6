@testable import Evpl
@testable import EvplTLS
import Testing
#if canImport(Glibc)
import Glibc
#endif

@Suite("Probe")
struct ProbeTests {
    @Test("protocols, backends and engines print the names the probe and the command line use")
    func namesPrintAlike() {
        let entries = Probe.entries()
        let names = { (kind: String) in Set(entries.filter { $0.kind == kind }.map(\.name)) }
        #expect(Set(EvplProtocol.Transport.allCases.map { "\($0)" }) == names("protocol"))
        #expect(Set(EvplProtocol.Backend.allCases.map { "\($0)" }) == names("backend"))
        #expect(Set(BlockEngine.allCases.map { "\($0)" }) == names("block-engine"))
        #expect("\(EvplProtocol.Backend.ioUring)" == "io_uring" && "\(BlockEngine.vfioNVMe)" == "vfio-nvme")
        #expect("\(EvplProtocol(.tcp, backend: .ioUring))" == "tcp/io_uring")
    }

    @Test("every protocol, backend and block engine is listed, and each unavailable one says why")
    func entriesAreComplete() throws {
        let entries = Probe.entries()
        #expect(Set(entries.filter { $0.kind == "protocol" }.map(\.name)) == ["tcp", "udp", "unix", "inproc"])
        #expect(Set(entries.filter { $0.kind == "backend" }.map(\.name)) == ["socket", "auto", "io_uring", "rdmacm", "xlio"])
        #expect(Set(entries.filter { $0.kind == "block-engine" }.map(\.name)) == ["io_uring", "libaio", "psync", "null", "vfio-nvme", "nvme-passthrough"])
        #expect(entries.filter { $0.kind == "block-engine" && ["psync", "null", "libaio"].contains($0.name) }.allSatisfy { $0.available })
        #expect(entries.filter { !$0.available }.allSatisfy { !$0.reason.isEmpty })
        let uring = try #require(entries.first { $0.kind == "backend" && $0.name == "io_uring" })
        // Where io_uring is known to work (CI sets EVPL_EXPECT_IO_URING=1),
        // a probe that says otherwise fails the run instead of silently
        // dropping every io_uring case from the suite.
        if ProcessEnvironment.current()["EVPL_EXPECT_IO_URING"] == "1" {
            #expect(uring.available, "io_uring expected, but: \(uring.reason)")
        }
        if uring.available {
            let features = entries.filter { $0.kind == "io_uring-feature" }
            #expect(features.contains { $0.name == "setup DEFER_TASKRUN" && $0.available })
            #expect(features.contains { $0.name == "provided buffer ring" && $0.available })
        }
    }

    @Test("TLS is listed with the OpenSSL it runs on; kTLS is unavailable, with what the kernel offers")
    func tlsEntries() throws {
        let entries = Probe.tlsEntries()
        let tls = try #require(entries.first { $0.name == "tls" })
        #expect(tls.available && tls.reason.hasPrefix("OpenSSL 3"), "\(tls.reason)")
        let kernelTLS = try #require(entries.first { $0.name == "ktls" })
        #expect(!kernelTLS.available)
        #expect(kernelTLS.reason.contains("tcp_available_ulp"), "\(kernelTLS.reason)")
        var offered = ""
        if let file = fopen("/proc/sys/net/ipv4/tcp_available_ulp", "r") {
            var line = [CChar](repeating: 0, count: 256)
            if fgets(&line, 256, file) != nil { offered = String(decoding: line.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self) }
            fclose(file)
        }
        let kernelHasTLS = offered.split(whereSeparator: { $0 == " " || $0 == "\n" }).contains("tls")
        #expect(kernelTLS.reason.contains("offers the tls ULP") == kernelHasTLS, "\(kernelTLS.reason) / \(offered)")
        #expect("\(EvplProtocol(.tcp, backend: .socket, tls: try TLSFixtures.get().clientContext()))" == "tcp+tls/socket")
    }

    @Test("a backend this build or machine cannot use is a typed unavailable error, not a crash")
    func unavailableBackends() throws {
        let loop = try makeLoop()
        for evplProtocol in [EvplProtocol(.tcp, backend: .rdmacm), EvplProtocol(.udp, backend: .rdmacm), EvplProtocol(.tcp, backend: .xlio)] {
            #expect {
                _ = try evplProtocol.resolvedBackend()
            } throws: { error in
                (error as? EvplError)?.code == .unavailable
            }
        }
        #expect {
            _ = try loop.bindDatagram(SocketAddress(host: "127.0.0.1", port: 0), protocol: EvplProtocol(.udp, backend: .xlio)) { _, _, _ in }
        } throws: { error in
            (error as? EvplError)?.code == .unavailable
        }
        expectNoLeaks(loop)
    }
}
