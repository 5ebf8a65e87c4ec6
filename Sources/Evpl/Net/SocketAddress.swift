import CEvplLinux
#if canImport(Glibc)
import Glibc
#endif

/// An endpoint address: IPv4, IPv6, a Unix socket path, a Linux abstract
/// Unix name, or the name of an in-process listener. Stored in kernel form
/// so sends need no conversion.
public struct SocketAddress: Sendable, Hashable, CustomStringConvertible {
    enum Storage: Sendable, Hashable {
        case inet(address: UInt32, port: UInt16)  // both in network byte order
        case inet6(high: UInt64, low: UInt64, port: UInt16, scope: UInt32)  // address bytes as stored in memory
        case unixPath(String)
        case unixAbstract(String)
        case unixUnnamed
        /// An in-process listener's name; empty for the connecting end.
        case inProcess(String)
    }

    let storage: Storage

    /// Longest Unix socket path: `sun_path` less its terminating NUL.
    public static let maxUnixPathLength = 107
    /// Longest abstract name: `sun_path` less its leading NUL.
    public static let maxAbstractNameLength = 107

    init(storage: Storage) { self.storage = storage }

    /// An IP address and port. `host` is a numeric IPv4 or IPv6 address or a
    /// name resolved once, now.
    ///
    /// - Throws: ``EvplError`` `.invalidAddress` when `host` neither parses nor resolves.
    public init(host: String, port: UInt16) throws(EvplError) {
        var v4 = in_addr()
        if inet_pton(AF_INET, host, &v4) == 1 {
            storage = .inet(address: v4.s_addr, port: port.bigEndian)
            return
        }
        var v6 = in6_addr()
        if inet_pton(AF_INET6, host, &v6) == 1 {
            storage = Self.inet6(v6, port: port.bigEndian, scope: 0)
            return
        }
        self = try Self.resolve(host: host, port: port)
    }

    /// A filesystem Unix socket path: absolute, not `/`, at most 107 bytes.
    public init(unixPath path: String) throws(EvplError) {
        guard path.hasPrefix("/"), path != "/" else {
            throw EvplError(.invalidAddress, operation: "unix address", context: "\"\(path)\" (need an absolute path to a socket)")
        }
        guard path.utf8.count <= Self.maxUnixPathLength else {
            throw EvplError(.pathTooLong, operation: "unix address", context: "\(path.utf8.count) bytes, at most \(Self.maxUnixPathLength)")
        }
        storage = .unixPath(path)
    }

    /// A Linux abstract Unix name (no filesystem entry), 1 to 107 bytes.
    public init(abstractName name: String) throws(EvplError) {
        guard !name.isEmpty else {
            throw EvplError(.invalidAddress, operation: "unix address", context: "empty abstract name")
        }
        guard name.utf8.count <= Self.maxAbstractNameLength else {
            throw EvplError(.pathTooLong, operation: "unix address", context: "abstract name of \(name.utf8.count) bytes, at most \(Self.maxAbstractNameLength)")
        }
        storage = .unixAbstract(name)
    }

    /// The name of an in-process listener (see ``EvplProtocol/Transport/inproc``):
    /// 1 to 107 bytes, unique in the process while its listener lives.
    public init(inProcessName name: String) throws(EvplError) {
        guard !name.isEmpty, name.utf8.count <= Self.maxAbstractNameLength else {
            throw EvplError(.invalidAddress, operation: "inproc address", context: "a name of \(name.utf8.count) bytes (need 1 to \(Self.maxAbstractNameLength))")
        }
        storage = .inProcess(name)
    }

    /// Parses `a.b.c.d:port`, `[v6]:port`, `host:port`, `/unix/path`,
    /// `@abstract` or `inproc:name`.
    public init(parsing text: String) throws(EvplError) {
        if text.hasPrefix("inproc:") {
            try self.init(inProcessName: String(text.dropFirst("inproc:".count)))
        } else if text.hasPrefix("/") {
            try self.init(unixPath: text)
        } else if text.hasPrefix("@") {
            try self.init(abstractName: String(text.dropFirst()))
        } else {
            guard let colon = text.lastIndex(of: ":"), let port = UInt16(text[text.index(after: colon)...]) else {
                throw EvplError(.invalidAddress, operation: "parse address", context: "\"\(text)\" (expected host:port, /path, @name or inproc:name)")
            }
            var host = text[..<colon]
            if host.hasPrefix("[") && host.hasSuffix("]") { host = host.dropFirst().dropLast() }
            try self.init(host: String(host), port: port)
        }
    }

    /// `ip:port`, `[ip6]:port`, the socket path, `@name`, `unix:*` for an
    /// unbound Unix socket, or `inproc:name` (`inproc:*` for the connecting end).
    public var description: String {
        switch storage {
        case .inet(let address, let port):
            var raw = in_addr(s_addr: address)
            var text = [CChar](repeating: 0, count: Int(INET_ADDRSTRLEN))
            inet_ntop(AF_INET, &raw, &text, socklen_t(text.count))
            return "\(String(decoding: text.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)):\(UInt16(bigEndian: port))"
        case .inet6(let high, let low, let port, let scope):
            var text = [CChar](repeating: 0, count: Int(INET6_ADDRSTRLEN))
            var raw = (high, low)
            inet_ntop(AF_INET6, &raw, &text, socklen_t(text.count))
            // A link-local address means nothing without its interface.
            let zone = scope == 0 ? "" : "%\(scope)"
            return "[\(String(decoding: text.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self))\(zone)]:\(UInt16(bigEndian: port))"
        case .unixPath(let path):
            return path
        case .unixAbstract(let name):
            return "@\(name)"
        case .unixUnnamed:
            return "unix:*"
        case .inProcess(let name):
            return "inproc:\(name.isEmpty ? "*" : name)"
        }
    }

    /// The port of an IP address, `nil` for Unix addresses.
    public var port: UInt16? {
        switch storage {
        case .inet(_, let port), .inet6(_, _, let port, _): return UInt16(bigEndian: port)
        default: return nil
        }
    }

    /// Whether this is a Unix-domain address.
    public var isUnix: Bool {
        switch storage {
        case .unixPath, .unixAbstract, .unixUnnamed: return true
        default: return false
        }
    }

    /// Whether this names an in-process listener (or its connecting end).
    public var isInProcess: Bool {
        if case .inProcess = storage { return true }
        return false
    }

    /// Whether this is an IP loopback address (127.0.0.0/8 or ::1).
    public var isLoopback: Bool {
        switch storage {
        case .inet(let address, _): return UInt32(bigEndian: address) >> 24 == 127
        case .inet6(let high, let low, _, _): return high == 0 && UInt64(bigEndian: low) == 1
        default: return false
        }
    }

    var family: Int32 {
        switch storage {
        case .inet: return AF_INET
        case .inet6: return AF_INET6
        default: return AF_UNIX
        }
    }

    /// Calls `body` with this address in `sockaddr` form.
    func withSockAddr<R>(_ body: (UnsafePointer<sockaddr>, socklen_t) -> R) -> R {
        switch storage {
        case .inet(let address, let port):
            var raw = sockaddr_in()
            raw.sin_family = sa_family_t(AF_INET)
            raw.sin_port = port
            raw.sin_addr.s_addr = address
            return withUnsafePointer(to: &raw) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { body($0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
            }
        case .inet6(let high, let low, let port, let scope):
            var raw = sockaddr_in6()
            raw.sin6_family = sa_family_t(AF_INET6)
            raw.sin6_port = port
            raw.sin6_scope_id = scope
            withUnsafeMutableBytes(of: &raw.sin6_addr) { bytes in
                bytes.storeBytes(of: high, toByteOffset: 0, as: UInt64.self)
                bytes.storeBytes(of: low, toByteOffset: 8, as: UInt64.self)
            }
            return withUnsafePointer(to: &raw) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { body($0, socklen_t(MemoryLayout<sockaddr_in6>.size)) }
            }
        case .unixPath(let path):
            return Self.withUnix(bytes: Array(path.utf8), abstract: false, body)
        case .unixAbstract(let name):
            return Self.withUnix(bytes: Array(name.utf8), abstract: true, body)
        case .inProcess:
            preconditionFailure("an in-process address has no sockaddr form")
        case .unixUnnamed:
            var raw = sockaddr_un()
            raw.sun_family = sa_family_t(AF_UNIX)
            return withUnsafePointer(to: &raw) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { body($0, socklen_t(MemoryLayout<sa_family_t>.size)) }
            }
        }
    }

    private static func withUnix<R>(bytes: [UInt8], abstract: Bool, _ body: (UnsafePointer<sockaddr>, socklen_t) -> R) -> R {
        var raw = sockaddr_un()
        raw.sun_family = sa_family_t(AF_UNIX)
        let offset = abstract ? 1 : 0
        withUnsafeMutableBytes(of: &raw.sun_path) { path in
            path.baseAddress!.advanced(by: offset).copyMemory(from: bytes, byteCount: bytes.count)
        }
        let pathOffset = MemoryLayout<sockaddr_un>.offset(of: \sockaddr_un.sun_path)!
        let length = abstract ? pathOffset + 1 + bytes.count : pathOffset + bytes.count + 1
        return withUnsafePointer(to: &raw) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { body($0, socklen_t(length)) }
        }
    }

    /// Decodes a kernel `sockaddr` of `length` bytes.
    init?(_ raw: UnsafePointer<sockaddr>, length: socklen_t) {
        guard length >= socklen_t(MemoryLayout<sa_family_t>.size) else { return nil }
        switch Int32(raw.pointee.sa_family) {
        case AF_INET:
            let v4 = UnsafeRawPointer(raw).loadUnaligned(as: sockaddr_in.self)
            storage = .inet(address: v4.sin_addr.s_addr, port: v4.sin_port)
        case AF_INET6:
            let v6 = UnsafeRawPointer(raw).loadUnaligned(as: sockaddr_in6.self)
            storage = Self.inet6(v6.sin6_addr, port: v6.sin6_port, scope: v6.sin6_scope_id)
        case AF_UNIX:
            let pathOffset = MemoryLayout<sockaddr_un>.offset(of: \sockaddr_un.sun_path)!
            let pathLength = Int(length) - pathOffset
            guard pathLength > 0 else {
                storage = .unixUnnamed
                return
            }
            let path = UnsafeRawBufferPointer(start: UnsafeRawPointer(raw) + pathOffset, count: pathLength)
            if path[0] == 0 {
                storage = .unixAbstract(String(decoding: path.dropFirst(), as: UTF8.self))
            } else {
                storage = .unixPath(String(decoding: path.prefix { $0 != 0 }, as: UTF8.self))
            }
        default:
            return nil
        }
    }

    private static func inet6(_ address: in6_addr, port: UInt16, scope: UInt32) -> Storage {
        withUnsafeBytes(of: address) { bytes in
            .inet6(high: bytes.loadUnaligned(as: UInt64.self), low: bytes.loadUnaligned(fromByteOffset: 8, as: UInt64.self), port: port, scope: scope)
        }
    }

    private static func resolve(host: String, port: UInt16) throws(EvplError) -> SocketAddress {
        var hints = addrinfo()
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        var result: UnsafeMutablePointer<addrinfo>?
        let status = getaddrinfo(host, String(port), &hints, &result)
        defer { if result != nil { freeaddrinfo(result) } }
        var cursor = result
        while status == 0, let info = cursor {
            if let address = info.pointee.ai_addr, let decoded = SocketAddress(address, length: info.pointee.ai_addrlen) {
                return decoded
            }
            cursor = info.pointee.ai_next
        }
        throw EvplError(.invalidAddress, operation: "resolve", context: "\"\(host)\" (\(String(cString: gai_strerror(status))))")
    }
}
