import CEvplLinux
#if canImport(Glibc)
import Glibc
#endif

/// What this machine and this build can do: every protocol, backend and
/// block engine the library knows, each available or not, with the reason
/// found here. TLS lives in the `EvplTLS` module, which probes it
/// (`Probe.tlsEntries()`).
public enum Probe {
    /// One probed capability.
    public struct Entry: Sendable, Hashable {
        /// Its name as used on the command line: `tcp`, `io_uring`, `rdmacm`, ...
        public var name: String
        /// `protocol`, `backend` or `block-engine`.
        public var kind: String
        /// Whether it can be used now.
        public var available: Bool
        /// Why not, when it cannot ("" when available).
        public var reason: String

        /// An entry for a capability a module above this one probes (TLS).
        package init(name: String, kind: String, available: Bool, reason: String) {
            self.name = name
            self.kind = kind
            self.available = available
            self.reason = reason
        }
    }

    /// Probes every transport, backend and block engine. Cheap: a few sockets, one syscall, a few paths.
    public static func entries() -> [Entry] {
        var result: [Entry] = []
        for (name, family, type) in [("tcp", AF_INET, SOCK_STREAM), ("udp", AF_INET, SOCK_DGRAM), ("unix", AF_UNIX, SOCK_STREAM)] {
            let fd = socket(family, Int32(type.rawValue | SOCK_CLOEXEC.rawValue), 0)
            if fd >= 0 {
                SystemCalls.close(fd)
                result.append(Entry(name: name, kind: "protocol", available: true, reason: ""))
            } else {
                result.append(Entry(name: name, kind: "protocol", available: false, reason: "socket(): \(String(cString: strerror(Glibc.errno)))"))
            }
        }
        // Needs nothing from the kernel: two loops of this process.
        result.append(Entry(name: "inproc", kind: "protocol", available: true, reason: ""))
        result.append(Entry(name: "socket", kind: "backend", available: true, reason: ""))
        result.append(Entry(name: "auto", kind: "backend", available: true, reason: EvplProtocol.autoSelectionReason))
        let ioUringReason = unavailableReason(for: .ioUring)
        result.append(Entry(name: "io_uring", kind: "backend", available: ioUringReason == nil,
                            reason: ioUringReason ?? "carries tcp, udp and unix"))
        for feature in URingFeatures.current.features {
            result.append(Entry(name: feature.name, kind: "io_uring-feature", available: feature.available, reason: feature.reason))
        }
        for backend in [EvplProtocol.Backend.rdmacm, .xlio] {
            result.append(Entry(name: backend.rawValue, kind: "backend", available: false, reason: unavailableReason(for: backend) ?? "not implemented in this build"))
        }
        for engine in BlockEngine.allCases {
            let reason = engine.unavailableReason
            result.append(Entry(name: engine.rawValue, kind: "block-engine", available: reason == nil, reason: reason ?? ""))
        }
        return result
    }

    /// Why `backend` cannot carry network protocols here, or `nil` if it can.
    public static func unavailableReason(for backend: EvplProtocol.Backend) -> String? {
        switch backend {
        case .auto, .socket:
            return nil
        case .ioUring:
            return URingFeatures.current.unavailableReason
        case .rdmacm:
            if directoryEntries("/sys/class/infiniband").isEmpty {
                return "no RDMA devices (/sys/class/infiniband is empty or missing)"
            }
            return "RDMA devices present, but the rdmacm backend is not implemented in this build"
        case .xlio:
            if let handle = dlopen("libxlio.so", RTLD_LAZY) {
                dlclose(handle)
                return "libxlio.so found, but the xlio backend is not implemented in this build"
            }
            return "libxlio.so not found (XLIO needs an NVIDIA ConnectX NIC and its user-space stack)"
        }
    }

    static func nvmePassthroughReason() -> String {
        let devices = directoryEntries("/dev").filter { $0.hasPrefix("ng") }
        if devices.isEmpty {
            return "no NVMe generic character devices (/dev/ng*) on this machine"
        }
        return "NVMe generic devices present (\(devices.joined(separator: ", "))), but the passthrough engine is not implemented in this build"
    }

    static func vfioReason() -> String {
        let bound = directoryEntries("/sys/bus/pci/drivers/vfio-pci").filter { $0.contains(":") }
        if bound.isEmpty {
            return "no PCI device bound to vfio-pci (needs an NVMe SSD and IOMMU)"
        }
        return "devices bound to vfio-pci, but the vfio-nvme engine is not implemented in this build"
    }

    /// The name in a `readdir` entry. Read up to its NUL only: an entry is
    /// as long as its name, so copying the whole `d_name` array can read past
    /// the end of the directory buffer (AddressSanitizer caught it).
    static func entryName(_ entry: UnsafeMutablePointer<dirent>) -> String {
        let name = UnsafeRawPointer(entry) + MemoryLayout<dirent>.offset(of: \dirent.d_name)!
        let length = strlen(name.assumingMemoryBound(to: CChar.self))
        return String(decoding: UnsafeRawBufferPointer(start: name, count: length), as: UTF8.self)
    }

    private static func directoryEntries(_ path: String) -> [String] {
        guard let directory = opendir(path) else { return [] }
        defer { closedir(directory) }
        var names: [String] = []
        while let entry = readdir(directory) {
            let name = entryName(entry)
            if name != "." && name != ".." { names.append(name) }
        }
        return names
    }
}
