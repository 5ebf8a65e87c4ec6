import Evpl
import EvplTLS
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// A child process the loop keeps turning beside: its pid and its output.
private struct Peer {
    let pid: pid_t
    let output: Int32

    /// Starts a shell script.
    init(_ script: String) throws {
        (pid, output) = try spawnProcess("/bin/sh", ["-c", script])
    }

    /// Turns `loop` until the child exits; returns its status and output.
    func finish(turning loop: EventLoop, _ what: String) throws -> (status: Int32, output: String) {
        var status: Int32 = 0
        var exited = false
        try spin(loop, seconds: 60, what) {
            exited = exited || waitpid(pid, &status, WNOHANG) == pid
            return exited
        }
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 4096)
        while case let count = read(output, &chunk, chunk.count), count > 0 { bytes += chunk[0..<count] }
        close(output)
        let code = (status & 0x7F) == 0 ? (status >> 8) & 0xFF : 128 + (status & 0x7F)
        return (code, String(decoding: bytes, as: UTF8.self))
    }
}

/// The Python `ssl` client the server tests run: `MODE PORT CA [CERT KEY]`.
/// Modes: `echo-1.2`/`echo-1.3` (64 MiB in random chunks, checked, then
/// close_notify), `truncate` (1000 bytes and their echo, then a TCP FIN
/// without close_notify),
/// `alpn-mismatch` (offers only http/1.1). Prints one line of outcome.
private let pythonClient = #"""
import random, socket, ssl, sys
mode, port, ca = sys.argv[1], int(sys.argv[2]), sys.argv[3]
context = ssl.create_default_context(cafile=ca)
if len(sys.argv) > 5:
    context.load_cert_chain(sys.argv[4], sys.argv[5])
if mode == 'echo-1.2':
    context.maximum_version = ssl.TLSVersion.TLSv1_2
context.set_alpn_protocols(['http/1.1'] if mode == 'alpn-mismatch' else ['h2'])
raw = socket.create_connection(('127.0.0.1', port))
try:
    tls = context.wrap_socket(raw, server_hostname='localhost')
    version, alpn = tls.version(), tls.selected_alpn_protocol()
    if mode == 'truncate':
        # Reads its echo (and any session tickets), so that closing sends
        # a plain FIN, not a reset: the TCP stream ends, the TLS one does not.
        tls.sendall(b'x' * 1000)
        echoed = 0
        while echoed < 1000:
            echoed += len(tls.recv(1000))
        tls.shutdown(socket.SHUT_RDWR)  # the socket's shutdown; SSLSocket.unwrap would send close_notify
        tls.close()
        print('truncated')
        sys.exit(0)
    data = random.randbytes(64 << 20)
    # One thread: an SSL object must not be used from two at once. At
    # most 256 KiB is in flight, so neither side's buffers fill up.
    sent = 0
    got = bytearray()
    while len(got) < len(data):
        if sent < len(data) and sent - len(got) < 256 * 1024:
            piece = data[sent:sent + random.randint(1, 70000)]
            tls.sendall(piece)
            sent += len(piece)
        else:
            chunk = tls.recv(1 << 20)
            if not chunk:
                break
            got += chunk
    if got != data:
        print('mismatch', len(got))
        sys.exit(0)
    tls.unwrap()
    print('ok', version, alpn)
except (ssl.SSLError, OSError) as error:
    print('refused', type(error).__name__, error)
"""#

/// The Python `ssl` echo server the client test runs: `VERSION CERT KEY`.
/// Prints its port, serves one connection with TLS `VERSION` (1.2 or 1.3),
/// echoing every byte until the client's close_notify, then answers with
/// its own and prints `ok VERSION BYTES`.
private let pythonServer = #"""
import socket, ssl, sys
version, certificate, key = sys.argv[1], sys.argv[2], sys.argv[3]
context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
context.load_cert_chain(certificate, key)
context.maximum_version = ssl.TLSVersion.TLSv1_3 if version == '1.3' else ssl.TLSVersion.TLSv1_2
listener = socket.create_server(('127.0.0.1', 0))
print(listener.getsockname()[1], flush=True)
raw, _ = listener.accept()
try:
    tls = context.wrap_socket(raw, server_side=True)
    negotiated = tls.version()
    echoed = 0
    while True:
        chunk = tls.recv(1 << 20)
        if not chunk:
            break
        tls.sendall(chunk)
        echoed += len(chunk)
    tls.unwrap()
    print('ok', negotiated, echoed, flush=True)
except (ssl.SSLError, OSError) as error:
    print('failed', type(error).__name__, error, flush=True)
"""#

/// Sends one hand-made record to a TLS server before any handshake and
/// prints, in hex, what the server answered before it closed: `PORT HEX`.
private let rawRecordClient = #"""
import socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
s.settimeout(5)
s.sendall(bytes.fromhex(sys.argv[2]))
data = b""
try:
    while True:
        chunk = s.recv(4096)
        if not chunk:
            break
        data += chunk
except OSError as error:
    data += b"|" + type(error).__name__.encode()
print(data.hex() if data else "nothing", flush=True)
"""#

/// A Python function that completes a handshake with `ssl` over memory
/// BIOs on a socket of its own, so that what follows can write records by
/// hand: `handshake(port, context)` returns the socket, the `SSLObject` and
/// its outgoing BIO.
private let memoryBIOHandshake = #"""
def handshake(port, context):
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = context.wrap_bio(incoming, outgoing, server_hostname="localhost")
    s = socket.create_connection(("127.0.0.1", port))
    s.settimeout(5)
    while True:
        try:
            tls.do_handshake()
            s.sendall(outgoing.read())
            return s, tls, outgoing
        except ssl.SSLWantReadError:
            s.sendall(outgoing.read())
            incoming.write(s.recv(65536))
"""#

/// Completes a handshake with Python's `ssl` over memory BIOs, then sends
/// one application-data record with the last byte of its tag flipped and
/// prints, in hex, every byte the server sent after it: `PORT CA VERSION`.
private let fuzzedCiphertextClient = #"""
import socket, ssl, sys
port, ca, version = int(sys.argv[1]), sys.argv[2], sys.argv[3]
context = ssl.create_default_context(cafile=ca)
context.minimum_version = context.maximum_version = ssl.TLSVersion.TLSv1_3 if version == "1.3" else ssl.TLSVersion.TLSv1_2
\#(memoryBIOHandshake)
s, tls, outgoing = handshake(port, context)
tls.write(b"x" * 64)
record = bytearray(outgoing.read())
record[-1] ^= 0x01
s.sendall(bytes(record))
data = b""
try:
    while True:
        chunk = s.recv(65536)
        if not chunk:
            break
        data += chunk
except OSError as error:
    data += b"|" + type(error).__name__.encode()
print(data.hex() if data else "nothing", flush=True)
"""#

/// Completes a TLS 1.3 handshake with Python's `ssl` over memory BIOs,
/// takes the traffic secrets from its key log, then seals hand-made inner
/// plaintexts with AES-128-GCM (libcrypto through ctypes) and prints what
/// the server answered, decrypted: `PORT CA CASE`.
private let fuzzedPlaintextClient = #"""
import ctypes, ctypes.util, hashlib, hmac, os, socket, ssl, sys, tempfile
port, ca, case = int(sys.argv[1]), sys.argv[2], sys.argv[3]
crypto = ctypes.CDLL(ctypes.util.find_library("crypto"))
crypto.EVP_CIPHER_CTX_new.restype = ctypes.c_void_p
crypto.EVP_aes_128_gcm.restype = ctypes.c_void_p
crypto.EVP_CIPHER_CTX_free.argtypes = [ctypes.c_void_p]
for name in ("EVP_EncryptInit_ex", "EVP_DecryptInit_ex"):
    getattr(crypto, name).argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_char_p, ctypes.c_char_p]
for name in ("EVP_EncryptUpdate", "EVP_DecryptUpdate"):
    getattr(crypto, name).argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.POINTER(ctypes.c_int), ctypes.c_char_p, ctypes.c_int]
for name in ("EVP_EncryptFinal_ex", "EVP_DecryptFinal_ex"):
    getattr(crypto, name).argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.POINTER(ctypes.c_int)]
crypto.EVP_CIPHER_CTX_ctrl.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_int, ctypes.c_void_p]

def gcm(encrypt, key, nonce, aad, data, tag=None):
    context = crypto.EVP_CIPHER_CTX_new()
    try:
        init = crypto.EVP_EncryptInit_ex if encrypt else crypto.EVP_DecryptInit_ex
        update = crypto.EVP_EncryptUpdate if encrypt else crypto.EVP_DecryptUpdate
        final = crypto.EVP_EncryptFinal_ex if encrypt else crypto.EVP_DecryptFinal_ex
        assert init(context, crypto.EVP_aes_128_gcm(), None, key, nonce) == 1
        length = ctypes.c_int(0)
        assert update(context, None, ctypes.byref(length), aad, len(aad)) == 1
        out = ctypes.create_string_buffer(len(data) + 16)
        assert update(context, out, ctypes.byref(length), data, len(data)) == 1
        if not encrypt:
            crypto.EVP_CIPHER_CTX_ctrl(context, 0x11, 16, ctypes.c_char_p(tag))
        if final(context, None, ctypes.byref(ctypes.c_int(0))) != 1:
            return None
        if encrypt:
            tag = ctypes.create_string_buffer(16)
            crypto.EVP_CIPHER_CTX_ctrl(context, 0x10, 16, tag)
            return out.raw[:len(data)] + tag.raw
        return out.raw[:len(data)]
    finally:
        crypto.EVP_CIPHER_CTX_free(context)

def expand_label(secret, label, length):
    full = b"tls13 " + label
    info = length.to_bytes(2, "big") + bytes([len(full)]) + full + b"\x00"
    out, block, counter = b"", b"", 1
    while len(out) < length:
        block = hmac.new(secret, block + info + bytes([counter]), hashlib.sha256).digest()
        out += block
        counter += 1
    return out[:length]

class Direction:
    def __init__(self, secret):
        self.key, self.iv, self.sequence = expand_label(secret, b"key", 16), expand_label(secret, b"iv", 12), 0
    def nonce(self):
        padded = self.sequence.to_bytes(12, "big")
        self.sequence += 1
        return bytes(a ^ b for a, b in zip(self.iv, padded))
    def seal(self, inner):
        header = b"\x17\x03\x03" + (len(inner) + 16).to_bytes(2, "big")
        return header + gcm(True, self.key, self.nonce(), header, inner)
    def open(self, header, body):
        return gcm(False, self.key, self.nonce(), header, body[:-16], body[-16:])

keylog = tempfile.NamedTemporaryFile(suffix=".keys", delete=False).name
context = ssl.create_default_context(cafile=ca)
context.minimum_version = context.maximum_version = ssl.TLSVersion.TLSv1_3
context.keylog_filename = keylog
\#(memoryBIOHandshake)
s, tls, outgoing = handshake(port, context)
assert tls.cipher()[0] == "TLS_AES_128_GCM_SHA256", tls.cipher()
secrets = {}
for line in open(keylog):
    fields = line.split()
    if len(fields) == 3:
        secrets[fields[0]] = bytes.fromhex(fields[2])
os.unlink(keylog)
client, server = Direction(secrets["CLIENT_TRAFFIC_SECRET_0"]), Direction(secrets["SERVER_TRAFFIC_SECRET_0"])

records = {
    "no-content-type": [bytes(16)],
    "unknown-content-type": [b"hello\x99"],
    "overflow": [bytes(2**14 + 1) + b"\x17"],
    "empty-handshake": [b"\x16"],
    "unknown-handshake": [b"\xfe\x00\x00\x00\x16"],
    "empty-alert": [b"\x15"],
    "long-alert": [b"\x01\x00\x00\x15"],
    "client-hello-after-handshake": [b"\x01\x00\x00\x00\x16"],
    "zero-length-data": [b"\x17", b"hello\x17"],
    "padded-data": [b"hello\x17" + bytes(200)],
}[case]
for inner in records:
    s.sendall(client.seal(inner))
answers, buffered = [], b""
try:
    while True:
        chunk = s.recv(65536)
        if not chunk:
            answers.append("closed")
            break
        buffered += chunk
        while len(buffered) >= 5 and len(buffered) >= 5 + int.from_bytes(buffered[3:5], "big"):
            header, body = buffered[:5], buffered[5:5 + int.from_bytes(buffered[3:5], "big")]
            buffered = buffered[5 + len(body):]
            inner = server.open(header, body) if header[0] == 0x17 else None
            if inner is None:
                answers.append("undecryptable")
                continue
            inner = inner.rstrip(b"\x00")
            kind, content = inner[-1], inner[:-1]
            if kind == 0x15:
                answers.append("alert %d %d" % (content[0], content[1]))
            elif kind == 0x17:
                answers.append("data " + content.decode(errors="replace"))
                if case in ("zero-length-data", "padded-data"):
                    raise StopIteration
            else:
                answers.append("type %d" % kind)
except StopIteration:
    pass
except OSError as error:
    answers.append(type(error).__name__)
print(case + ": " + ", ".join(answers), flush=True)
"""#

@Suite("TLS against OpenSSL and Python")
struct TLSPeerTests {
    /// Runs an evpl TLS echo server on `loop` while `script` runs; returns
    /// the script's output and how each server connection ended.
    private func serve(_ context: TLSContext, backend: EvplProtocol.Backend, loop: EventLoop,
                       script: (UInt16) -> String, finishAfter bytes: Int? = nil) throws -> (output: String, ends: [EvplError?]) {
        let listener = try Listener(address: SocketAddress(host: "127.0.0.1", port: 0), protocol: EvplProtocol(.tcp, backend: backend, tls: context))
        defer { listener.close() }
        var ends: [EvplError?] = []
        loop.attach(to: listener) { connection in
            var echoed = 0
            connection.handler = { connection, event in
                switch event {
                case .received(let received):
                    try? received.withContiguousBytes { try connection.send(copying: $0) }
                    echoed += received.count
                    if let bytes, echoed >= bytes { connection.finish() }
                case .disconnected(let error):
                    ends.append(error)
                default:
                    break
                }
            }
        }
        try spin(loop, "the listener to attach") { listener.attachedLoopCount == 1 }
        let peer = try Peer(script(try #require(listener.address.port)))
        let (status, output) = try peer.finish(turning: loop, "the peer")
        #expect(status == 0, "the peer failed: \(output)")
        try spin(loop, "the server's connection to end after the peer (\(script(0))) printed \(output.debugDescription)") { !ends.isEmpty }
        return (output, ends)
    }

    private func python(_ mode: String, _ fixtures: TLSFixtures, withCertificate: Bool = false) throws -> (UInt16) -> String {
        let script = try fixtures.write(pythonClient, to: "client.py")
        let certificate = withCertificate ? " \(fixtures.clientCertificate) \(fixtures.clientKey)" : ""
        return { port in "python3 \(script) \(mode) \(port) \(fixtures.caCertificate)\(certificate)" }
    }

    @Test("Python's ssl client echoes 64 MiB in random chunks through an evpl server over TLS 1.2 and 1.3 with ALPN, ending with close_notify",
          arguments: StreamCase.backends)
    func pythonEcho(backend: EvplProtocol.Backend) throws {
        let fixtures = try TLSFixtures.get()
        let loop = try makeLoop()
        for (mode, version) in [("echo-1.3", "TLSv1.3"), ("echo-1.2", "TLSv1.2")] {
            let (output, ends) = try serve(fixtures.serverContext(alpn: ["h2"]), backend: backend, loop: loop, script: try python(mode, fixtures))
            #expect(output == "ok \(version) h2\n", "\(mode): \(output)")
            #expect(ends.count == 1 && ends[0] == nil, "\(mode): \(ends)")
        }
        expectNoLeaks(loop)
    }

    @Test("an evpl server reports a Python client that closes TCP without close_notify as .tlsTruncated, refuses a client without the required certificate, and refuses disjoint ALPN",
          arguments: StreamCase.backends)
    func pythonRefusals(backend: EvplProtocol.Backend) throws {
        let fixtures = try TLSFixtures.get()
        let loop = try makeLoop()
        var (output, ends) = try serve(fixtures.serverContext(), backend: backend, loop: loop, script: try python("truncate", fixtures))
        #expect(output == "truncated\n")
        #expect(ends.count == 1 && ends[0]?.code == .tlsTruncated, "\(ends)")

        let mutual = try fixtures.serverContext(alpn: ["h2"], requireClientCertificate: true)
        (output, ends) = try serve(mutual, backend: backend, loop: loop, script: try python("echo-1.3", fixtures, withCertificate: true))
        #expect(output == "ok TLSv1.3 h2\n", "mutual TLS with a certificate: \(output)")
        #expect(ends.count == 1 && ends[0] == nil, "\(ends)")
        (output, ends) = try serve(mutual, backend: backend, loop: loop, script: try python("echo-1.3", fixtures))
        // TLS 1.3 clients finish their side first, then see the server's alert or its close.
        #expect(output.hasPrefix("refused") || output == "mismatch 0\n", "mutual TLS without a certificate: \(output)")
        #expect(ends.count == 1 && ends[0]?.code == .tlsHandshake, "\(ends)")
        #expect(ends.first??.context.contains("certificate") == true, "\(ends)")

        (output, ends) = try serve(fixtures.serverContext(alpn: ["h2"]), backend: backend, loop: loop, script: try python("alpn-mismatch", fixtures))
        #expect(output.hasPrefix("refused"), "disjoint ALPN: \(output)")
        #expect(ends.count == 1 && ends[0]?.code == .tlsHandshake, "\(ends)")
        expectNoLeaks(loop)
    }

    @Test("a fatal alert goes out before the close: openssl s_client without the certificate a server requires sees alert 116 (certificate required)",
          arguments: StreamCase.backends)
    func fatalAlertIsSent(backend: EvplProtocol.Backend) throws {
        let fixtures = try TLSFixtures.get()
        let loop = try makeLoop()
        let mutual = try fixtures.serverContext(requireClientCertificate: true)
        let (output, ends) = try serve(mutual, backend: backend, loop: loop, script: { port in
            "(sleep 1) | openssl s_client -connect 127.0.0.1:\(port) -servername localhost -CAfile \(fixtures.caCertificate) -tls1_3 2>&1; true"
        })
        #expect(output.contains("alert number 116"), "\(output)")
        #expect(ends.count == 1 && ends[0]?.code == .tlsHandshake, "\(ends)")
        expectNoLeaks(loop)
    }

    @Test("a peer that sends KeyUpdate(update_requested) without end is closed after the limit with close_notify and .tls",
          arguments: StreamCase.backends)
    func keyUpdateFlood(backend: EvplProtocol.Backend) throws {
        let fixtures = try TLSFixtures.get()
        let loop = try makeLoop()
        // s_client sends a KeyUpdate asking for one back for each read of stdin that starts with "K".
        let (output, ends) = try serve(fixtures.serverContext(), backend: backend, loop: loop, script: { port in
            "for i in $(seq 100); do echo K; sleep 0.01; done | openssl s_client -connect 127.0.0.1:\(port) -servername localhost -CAfile \(fixtures.caCertificate) -tls1_3 >/dev/null 2>&1; true"
        })
        _ = output
        #expect(ends.count == 1 && ends[0]?.code == .tls, "\(ends)")
        #expect(ends.first??.context.contains("KeyUpdate") == true, "\(ends)")
        expectNoLeaks(loop)
    }

    /// Records RFC 8446 says a server must refuse with a named alert
    /// (section 5 and 5.1), and what it must answer: the same answers
    /// `openssl s_server` gives, from the same libssl.
    static let malformedRecords: [(name: String, record: String, alert: UInt8)] = [
        // 5: an unexpected record type: unexpected_message (10).
        ("application data before the handshake", "1703030000", 10),
        ("an unknown content type", "180303000100", 10),
        // 5.1: an alert record holds exactly one alert; an empty one is unexpected (OpenSSL: 10).
        ("an empty alert record", "1503010000", 10),
        // 5.1: longer than 2^14 bytes: record_overflow (22).
        ("a record of 2^14 + 257 bytes", "1603014101" + String(repeating: "00", count: 0x4101), 22),
    ]

    @Test("malformed records before the handshake are answered with the fatal alert RFC 8446 names, then the close",
          arguments: StreamCase.backends)
    func malformedRecordAlerts(backend: EvplProtocol.Backend) throws {
        let fixtures = try TLSFixtures.get()
        let loop = try makeLoop()
        let script = try fixtures.write(rawRecordClient, to: "raw-record.py")
        for (name, record, alert) in Self.malformedRecords {
            let (output, ends) = try serve(fixtures.serverContext(), backend: backend, loop: loop, script: { port in
                "python3 \(script) \(port) \(record)"
            })
            // A plaintext fatal alert: type 21, any version, length 2, level 2, the description.
            let answer = String(output.filter { !$0.isNewline })
            let description = (alert < 16 ? "0" : "") + String(alert, radix: 16)
            #expect(answer.count == 14 && answer.hasPrefix("1503") && answer.hasSuffix("000202" + description),
                    "\(name): the server answered \(answer), not fatal alert \(alert)")
            #expect(ends.count == 1 && ends[0]?.code == .tlsHandshake, "\(name): \(ends)")
        }
        expectNoLeaks(loop)
    }

    @Test("a record whose ciphertext was tampered with ends the connection with .tls after one encrypted alert record (bad_record_mac), over TLS 1.3 and 1.2",
          arguments: StreamCase.backends)
    func fuzzedCiphertextAlert(backend: EvplProtocol.Backend) throws {
        let fixtures = try TLSFixtures.get()
        let loop = try makeLoop()
        let script = try fixtures.write(fuzzedCiphertextClient, to: "fuzzed-ciphertext.py")
        // An encrypted alert under AES-128-GCM: TLS 1.3 wraps it as application data (2 bytes, the
        // inner type, a 16-byte tag); TLS 1.2 sends it as an alert record (an 8-byte nonce, 2 bytes, the tag).
        for (version, expected) in [("1.3", "1703030013"), ("1.2", "150303001a")] {
            let (output, ends) = try serve(fixtures.serverContext(ticketsPerHandshake: 0), backend: backend, loop: loop, script: { port in
                "python3 \(script) \(port) \(fixtures.caCertificate) \(version)"
            })
            let answer = String(output.filter { !$0.isNewline })
            #expect(answer.hasPrefix(expected) && answer.count == expected.count + 2 * (version == "1.3" ? 19 : 26),
                    "TLS \(version): the server answered \(answer)")
            #expect(ends.count == 1 && ends[0]?.code == .tls, "TLS \(version): \(ends)")
        }
        expectNoLeaks(loop)
    }

    /// tlsfuzzer's fuzzed-plaintext, empty-record and post-handshake cases,
    /// each with the answer RFC 8446 requires: records that decrypt well but
    /// hold what no peer may send. (`openssl s_server` answers the same.)
    static let fuzzedPlaintexts: [(name: String, answer: String)] = [
        ("no-content-type", "alert 2 10, closed"),  // 5.4: no non-zero octet, unexpected_message
        ("unknown-content-type", "alert 2 10, closed"),  // 5: an unexpected record type
        ("overflow", "alert 2 22, closed"),  // 5.2: TLSInnerPlaintext over 2^14 + 1, record_overflow
        ("empty-handshake", "alert 2 10, closed"),  // 5.1: no zero-length handshake fragments
        ("unknown-handshake", "alert 2 10, closed"),  // 4: an unexpected message
        ("client-hello-after-handshake", "alert 2 10, closed"),  // 4.1.2: no renegotiation
        ("empty-alert", "alert 2 10, closed"),  // 5.1; listed in Conformance.md (no alert named)
        ("long-alert", "alert 2 10, closed"),  // 5.1; listed in Conformance.md (decode_error fits too)
        ("zero-length-data", "data hello"),  // 5.4: zero-length application data MAY be sent
        ("padded-data", "data hello"),  // 5.4: padding is zeros after the type
    ]

    @Test("records that decrypt but break RFC 8446 (no content type, unknown type, 2^14 + 2 bytes of plaintext, empty or unknown or renegotiating handshake, bad alerts) get the alert it names; empty and padded application data are served",
          arguments: StreamCase.backends)
    func fuzzedPlaintextAlerts(backend: EvplProtocol.Backend) throws {
        let fixtures = try TLSFixtures.get()
        let loop = try makeLoop()
        let script = try fixtures.write(fuzzedPlaintextClient, to: "fuzzed-plaintext.py")
        for (name, answer) in Self.fuzzedPlaintexts {
            let (output, ends) = try serve(fixtures.serverContext(ticketsPerHandshake: 0), backend: backend, loop: loop, script: { port in
                "python3 \(script) \(port) \(fixtures.caCertificate) \(name)"
            })
            #expect(String(output.filter { !$0.isNewline }) == "\(name): \(answer)")
            let expectedEnd: EvplError.Code = answer.hasPrefix("alert") ? .tls : .tlsTruncated
            #expect(ends.count == 1 && ends[0]?.code == expectedEnd, "\(name): \(ends)")
        }
        expectNoLeaks(loop)
    }

    @Test("openssl s_client gets its bytes echoed by an evpl server, which then ends the stream with close_notify",
          arguments: StreamCase.backends)
    func opensslClient(backend: EvplProtocol.Backend) throws {
        let fixtures = try TLSFixtures.get()
        let loop = try makeLoop()
        let text = String(repeating: "never lose a byte\n", count: 1000)
        let input = try fixtures.write(text, to: "s_client-input.txt")
        let (output, ends) = try serve(fixtures.serverContext(), backend: backend, loop: loop, script: { port in
            "openssl s_client -connect 127.0.0.1:\(port) -servername localhost -CAfile \(fixtures.caCertificate) -verify_return_error -quiet <\(input) 2>/dev/null"
        }, finishAfter: text.utf8.count)
        #expect(output == text, "\(output.count) bytes back")
        #expect(ends.count == 1 && ends[0] == nil, "\(ends)")
        expectNoLeaks(loop)
    }

    /// TLS 1.2 resumes through its own tickets and the server's session
    /// cache, which the TLS 1.3 ticket count does not govern.
    @Test("an evpl server that sends no tickets resumes no TLS 1.2 session of openssl s_client (-sess_out, then -sess_in); one that sends them does",
          arguments: StreamCase.backends)
    func opensslTLS12Resumption(backend: EvplProtocol.Backend) throws {
        let fixtures = try TLSFixtures.get()
        let loop = try makeLoop()
        for tickets in [2, 0] {
            let session = "\(fixtures.directory)/session-\(getpid())-\(UniqueName.next()).pem"
            defer { unlink(session) }
            let (output, _) = try serve(fixtures.serverContext(ticketsPerHandshake: tickets), backend: backend, loop: loop, script: { port in
                let client = "openssl s_client -connect 127.0.0.1:\(port) -servername localhost -CAfile \(fixtures.caCertificate) -tls1_2"
                // s_client saves no session that cannot be resumed.
                return "\(client) -sess_out \(session) </dev/null 2>&1 | grep -E '^(New|Reused),'; " +
                    "if [ -s \(session) ]; then \(client) -sess_in \(session) </dev/null 2>&1 | grep -E '^(New|Reused),'; else echo 'no session saved'; fi"
            })
            let lines = output.split(separator: "\n")
            #expect(lines.count == 2 && lines.first?.hasPrefix("New, TLSv1.2,") == true, "\(tickets) tickets: \(output)")
            if tickets == 0 {
                #expect(lines.last?.hasPrefix("New, TLSv1.2,") == true || lines.last == "no session saved", "\(tickets) tickets: \(output)")
            } else {
                #expect(lines.last?.hasPrefix("Reused, TLSv1.2,") == true, "\(tickets) tickets: \(output)")
            }
        }
        expectNoLeaks(loop)
    }

    /// A script running `openssl s_client` against the port once per entry
    /// of `runs` (its arguments), printing per run the line naming the
    /// version and cipher suite negotiated, or `refused`.
    private func opensslProbes(_ fixtures: TLSFixtures, _ runs: [String]) -> (UInt16) -> String {
        { port in
            let client = "openssl s_client -connect 127.0.0.1:\(port) -servername localhost -CAfile \(fixtures.caCertificate)"
            return runs.map { "\(client) \($0) </dev/null 2>&1 | grep -E '^(New|Reused),' | sed 's/.*Cipher is (NONE).*/refused/'" }.joined(separator: "; ")
        }
    }

    /// Runs each probe against a server with `context`; expects its line.
    private func expectProbes(_ probes: [(arguments: String, expected: String)], _ context: TLSContext, backend: EvplProtocol.Backend, loop: EventLoop) throws {
        let (output, _) = try serve(context, backend: backend, loop: loop, script: opensslProbes(try TLSFixtures.get(), probes.map(\.arguments)))
        let lines = output.split(separator: "\n").map(String.init)
        #expect(lines.count == probes.count, "\(output)")
        for (probe, line) in zip(probes, lines) {
            #expect(line == probe.expected, "openssl s_client \(probe.arguments)")
        }
    }

    @Test("the default profile (Mozilla's intermediate) refuses openssl s_client asking for TLS 1.2 CBC or RSA key exchange suites, or for X448, P-521 or ffdhe8192 key exchange, and picks AES-128-GCM itself over TLS 1.2 and 1.3",
          arguments: StreamCase.backends)
    func intermediateProfile(backend: EvplProtocol.Backend) throws {
        let fixtures = try TLSFixtures.get()
        let loop = try makeLoop()
        // openssl s_client lists AES-256-GCM first: the server's preference decides.
        try expectProbes([
            ("-tls1_3", "New, TLSv1.3, Cipher is TLS_AES_128_GCM_SHA256"),
            ("-tls1_2", "New, TLSv1.2, Cipher is ECDHE-ECDSA-AES128-GCM-SHA256"),
            ("-tls1_2 -cipher ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-ECDSA-CHACHA20-POLY1305", "New, TLSv1.2, Cipher is ECDHE-ECDSA-AES256-GCM-SHA384"),
            ("-tls1_2 -cipher ECDHE-ECDSA-AES128-SHA", "refused"),
            ("-tls1_2 -cipher ECDHE-ECDSA-AES256-SHA384", "refused"),
            ("-groups ffdhe8192", "refused"),
            ("-groups X448", "refused"),
            ("-groups P-521", "refused"),
            ("-tls1_2 -groups P-521", "refused"),
            ("-groups P-384", "New, TLSv1.3, Cipher is TLS_AES_128_GCM_SHA256"),
        ], fixtures.serverContext(), backend: backend, loop: loop)
        try expectProbes([
            ("-tls1_2", "New, TLSv1.2, Cipher is ECDHE-RSA-AES128-GCM-SHA256"),
            ("-tls1_2 -cipher AES128-SHA", "refused"),
            ("-tls1_2 -cipher AES128-GCM-SHA256", "refused"),
            ("-tls1_2 -cipher ECDHE-RSA-AES128-SHA", "refused"),
        ], fixtures.serverContext(rsa: true), backend: backend, loop: loop)
        expectNoLeaks(loop)
    }

    @Test("the modern profile refuses openssl s_client over TLS 1.2 and serves it over TLS 1.3; asked to stop at TLS 1.2 it is refused",
          arguments: StreamCase.backends)
    func modernProfile(backend: EvplProtocol.Backend) throws {
        let fixtures = try TLSFixtures.get()
        let loop = try makeLoop()
        try expectProbes([
            ("-tls1_2", "refused"),
            ("-tls1_3", "New, TLSv1.3, Cipher is TLS_AES_128_GCM_SHA256"),
            ("", "New, TLSv1.3, Cipher is TLS_AES_128_GCM_SHA256"),
        ], fixtures.serverContext(profile: .modern), backend: backend, loop: loop)
        let error = #expect(throws: EvplError.self) { _ = try fixtures.serverContext(maximumVersion: .tls12, profile: .modern) }
        #expect(error?.code == .invalidArgument && error?.context.contains("modern profile") == true, "\(String(describing: error))")
        expectNoLeaks(loop)
    }

    @Test("an evpl client talks to openssl s_server over TLS 1.3 and 1.2, verifying its certificate, and ends with close_notify",
          arguments: StreamCase.backends)
    func opensslServer(backend: EvplProtocol.Backend) throws {
        let fixtures = try TLSFixtures.get()
        let loop = try makeLoop()
        for versionFlag in ["-tls1_3", "-tls1_2"] {
            let server = try Peer("exec openssl s_server -accept 0 -naccept 1 -rev \(versionFlag) -cert \(fixtures.serverCertificate) -key \(fixtures.serverKey) 2>&1")
            var banner: [UInt8] = []
            while !String(decoding: banner, as: UTF8.self).contains("ACCEPT") {
                var byte: UInt8 = 0
                guard read(server.output, &byte, 1) == 1 else { break }
                banner.append(byte)
            }
            var line: [UInt8] = []
            while line.last != UInt8(ascii: "\n") {
                var byte: UInt8 = 0
                guard read(server.output, &byte, 1) == 1 else { break }
                line.append(byte)
            }
            // "ACCEPT [::]:PORT"
            let port = try #require(UInt16(String(decoding: line.reversed().drop { $0 < 0x30 || $0 > 0x39 }.prefix { $0 >= 0x30 && $0 <= 0x39 }.reversed(), as: UTF8.self)))
            let client = TLSEndpointLog()
            let connection = try loop.connect(to: SocketAddress(host: "127.0.0.1", port: port),
                                              protocol: EvplProtocol(.tcp, backend: backend, tls: try fixtures.clientContext())) { connection, event in
                client.record(connection, event, echo: false)
            }
            try connection.send(Array("hello, evpl\n".utf8))
            try spin(loop, "the reversed line") { client.received.count >= 12 || client.ended != nil }
            #expect(String(decoding: client.received, as: UTF8.self) == "lpve ,olleh\n", "\(versionFlag)")
            #expect(client.version == (versionFlag == "-tls1_3" ? "TLSv1.3" : "TLSv1.2"))
            connection.finish()
            let (_, output) = try server.finish(turning: loop, "s_server to exit")
            try spin(loop, "the client to end") { client.ended != nil }
            #expect(client.ended == .some(nil), "\(versionFlag): \(String(describing: client.ended)) \(output)")
        }
        expectNoLeaks(loop)
    }

    @Test("an evpl client echoes 64 MiB in random chunks through Python's ssl server over TLS 1.3 and 1.2, then half-closes with close_notify and still gets the rest of the echo, then the server's close_notify",
          arguments: StreamCase.backends)
    func pythonServerEcho(backend: EvplProtocol.Backend) throws {
        let fixtures = try TLSFixtures.get()
        let script = try fixtures.write(pythonServer, to: "server.py")
        let loop = try makeLoop()
        let total = 64 << 20
        var generator = SystemRandomNumberGenerator()
        // Random bytes repeating with a prime period, built with memcpy:
        // a debug build fills 64 MiB in no time.
        let period = (0..<1_000_003).map { _ in UInt8.random(in: 0...255, using: &generator) }
        var payload = [UInt8](repeating: 0, count: total)
        payload.withUnsafeMutableBytes { bytes in
            period.withUnsafeBytes { block in
                for start in stride(from: 0, to: total, by: block.count) {
                    memcpy(bytes.baseAddress! + start, block.baseAddress!, min(block.count, total - start))
                }
            }
        }
        for version in ["1.3", "1.2"] {
            let server = try Peer("exec python3 \(script) \(version) \(fixtures.serverCertificate) \(fixtures.serverKey)")
            var line: [UInt8] = []
            while line.last != UInt8(ascii: "\n") {
                var byte: UInt8 = 0
                guard read(server.output, &byte, 1) == 1 else { break }
                line.append(byte)
            }
            let port = try #require(UInt16(String(decoding: line.dropLast(), as: UTF8.self)), "the server's port: \(line)")
            let client = TLSEndpointLog()
            let connection = try loop.connect(to: SocketAddress(host: "127.0.0.1", port: port),
                                              protocol: EvplProtocol(.tcp, backend: backend, tls: try fixtures.clientContext())) { connection, event in
                client.record(connection, event, echo: false)
            }
            var sent = 0
            while sent < total && client.ended == nil {
                let chunk = min(Int.random(in: 1...70_000, using: &generator), total - sent)
                try payload[sent..<(sent + chunk)].withUnsafeBytes { try connection.send(copying: $0) }
                sent += chunk
                if connection.queuedBytes > 1 << 20 || sent - client.received.count > 4 << 20 {
                    try spin(loop, "the echo to catch up") {
                        (connection.queuedBytes < 256 << 10 && sent - client.received.count < 2 << 20) || client.ended != nil
                    }
                }
            }
            connection.finish()
            let (_, output) = try server.finish(turning: loop, "the Python server to exit")
            try spin(loop, "the client to end") { client.ended != nil }
            #expect(output == "ok TLSv\(version) \(total)\n", "\(version): \(output)")
            #expect(client.ended == .some(nil), "\(version): \(String(describing: client.ended))")
            let same = client.received.count == total && client.received.withUnsafeBytes { memcmp($0.baseAddress!, payload, total) == 0 }
            #expect(same, "\(version): \(client.received.count) bytes back")
        }
        expectNoLeaks(loop)
    }
}
