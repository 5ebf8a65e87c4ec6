import Evpl
import EvplTLS
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// The Python `ssl` client the TLS fault tests run inside the client
/// namespace: `HOST PORT CA BYTES SEED`. It echoes BYTES random bytes in
/// random chunks (at most 256 KiB in flight), checks them, ends with
/// close_notify and prints `ok`; a stream that ends early prints `short`,
/// an error `error NAME`. Ragged EOFs are errors, not ends.
private let faultClient = #"""
import random, socket, ssl, sys
host, port, ca, total, seed = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
random.seed(seed)
context = ssl.create_default_context(cafile=ca)
got = bytearray()
try:
    raw = socket.create_connection((host, port), timeout=60)
    tls = context.wrap_socket(raw, server_hostname=host, suppress_ragged_eofs=False)
    data = random.randbytes(total)
    sent = 0
    while len(got) < total:
        if sent < total and sent - len(got) < 256 * 1024:
            piece = data[sent:sent + random.randint(1, 70000)]
            tls.sendall(piece)
            sent += len(piece)
        else:
            chunk = tls.recv(1 << 20)
            if not chunk:
                print('short', len(got))
                sys.exit(0)
            got += chunk
    if got != data:
        print('mismatch')
        sys.exit(0)
    tls.unwrap()
    print('ok')
except (ssl.SSLError, OSError) as error:
    print('error', type(error).__name__, len(got))
"""#

/// TLS over the namespace pair of ``NetworkFaultTests``: an evpl TLS echo
/// server in one namespace, Python's `ssl` client in the other, faults on
/// the path between them.
@Suite("TLS on a faulty network path", .enabled(if: NetworkNamespacePair.isAvailable, "needs root, ip, nft and tc"))
struct TLSNetworkFaultTests {
    static let port: UInt16 = 7443

    /// A TLS echo server for 198.18.0.1 inside the server namespace, and
    /// the path of the certificate a client trusts.
    private func startServer(_ hosts: NetworkNamespacePair, backend: EvplProtocol.Backend) throws -> (ThreadedEchoServer, String) {
        let identity = try TLSConfiguration.selfSignedIdentity(for: [NetworkNamespacePair.serverAddress])
        var pem: [UInt8] = []
        if case .bytes(let bytes) = identity.certificateChain { pem = bytes }
        try #require(!pem.isEmpty, "a self-signed identity comes as PEM in memory")
        let certificate = try TLSFixtures.get().write(String(decoding: pem, as: UTF8.self), to: "fault-server-\(UniqueName.next()).pem")
        let context = try TLSContext(.server(certificateChain: identity.certificateChain, privateKey: identity.privateKey), role: .server)
        return (try hosts.startEchoServer(EvplProtocol(.tcp, backend: backend, tls: context), port: Self.port), certificate)
    }

    /// Runs the Python client in the client namespace; returns its line.
    private func runClient(_ hosts: NetworkNamespacePair, certificate: String, total: Int, seed: UInt64) throws -> String {
        let script = try TLSFixtures.get().write(faultClient, to: "fault-client.py")
        let result = try runShell("timeout 120 ip netns exec \(hosts.client) python3 \(script) \(NetworkNamespacePair.serverAddress) \(Self.port) \(certificate) \(total) \(seed) 2>&1")
        return result.output
    }

    @Test("random packet drops in both directions lose nothing over TLS: 4 MiB echoed, close_notify both ways", arguments: StreamCase.backends)
    func randomDrops(_ backend: EvplProtocol.Backend) throws {
        let hosts = try NetworkNamespacePair()
        for namespace in [hosts.server, hosts.client] {
            try hosts.addInputRule(in: namespace, "meta l4proto tcp numgen random mod 100 < 3 drop")
        }
        let (server, certificate) = try startServer(hosts, backend: backend)
        defer { server.stop() }
        let seed = UInt64(MonotonicClock.nanoseconds() % 1_000_000)
        let output = try runClient(hosts, certificate: certificate, total: 4 << 20, seed: seed)
        #expect(output == "ok\n", "seed \(seed): \(output)")
        server.awaitEnds(1)
        #expect(server.orderlyEnds.value == 1 && server.failedEnds.value == 0)
    }

    @Test("a reset injected mid-stream under TLS is an error at both ends, never a short stream", arguments: StreamCase.backends)
    func injectedReset(_ backend: EvplProtocol.Backend) throws {
        let hosts = try NetworkNamespacePair()
        // Once the server has sent 256 KiB, the client's host answers its
        // next segment with a reset (resets themselves pass).
        try hosts.addInputRule(in: hosts.client,
                               "ip saddr \(NetworkNamespacePair.serverAddress) tcp sport \(Self.port) tcp flags & rst == 0 ct reply bytes > 262144 reject with tcp reset")
        let (server, certificate) = try startServer(hosts, backend: backend)
        defer { server.stop() }
        let output = try runClient(hosts, certificate: certificate, total: 64 << 20, seed: 11)
        #expect(output.hasPrefix("error "), "the client saw no error: \(output)")
        server.awaitEnds(1)
        #expect(server.failedEnds.value == 1, "the server's connection did not end with an error")
        #expect(server.orderlyEnds.value == 0)
    }
}
