import COpenSSL
import Evpl
#if canImport(Glibc)
import Glibc
#endif

extension Probe {
    /// The TLS layer this module adds: the OpenSSL it links, and why
    /// records are not handed to the kernel (kTLS). `evpl probe` lists them
    /// after `Probe.entries()`.
    public static func tlsEntries() -> [Entry] {
        [
            Entry(name: "tls", kind: "stream-layer", available: true,
                  reason: "\(String(cString: OpenSSL_version(OPENSSL_VERSION))): TLS 1.2 and 1.3 over tcp, unix and inproc, on every backend"),
            Entry(name: "ktls", kind: "tls-offload", available: false, reason: kernelTLSReason()),
        ]
    }

    /// Why TLS records are not handed to the kernel (kTLS): whether the
    /// kernel offers the `tls` upper-layer protocol, and that this build
    /// encrypts in user space either way.
    static func kernelTLSReason() -> String {
        let path = "/proc/sys/net/ipv4/tcp_available_ulp"
        var text = ""
        if let file = fopen(path, "r") {
            var line = [CChar](repeating: 0, count: 256)
            if fgets(&line, Int32(line.count), file) != nil {
                let bytes = line.prefix { $0 != 0 && $0 != 0x0A }.map { UInt8(bitPattern: $0) }
                text = String(decoding: bytes, as: UTF8.self)
            }
            fclose(file)
        }
        if text.split(separator: " ").contains("tls") {
            return "the kernel offers the tls ULP (\(path): \(text)), but the kTLS offload is not implemented in this build: OpenSSL encrypts in user space"
        }
        return "the kernel offers no tls ULP (\(path): \(text.isEmpty ? "unreadable or empty" : text)); OpenSSL encrypts in user space"
    }
}
