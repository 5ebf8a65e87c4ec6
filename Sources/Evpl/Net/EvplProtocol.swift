/// A transport choice named at connect, listen or bind time: what kind of
/// channel (TCP stream, UDP datagrams, Unix stream) over which backend.
public struct EvplProtocol: Sendable, Hashable, CustomStringConvertible {
    /// The channel semantics and addressing.
    public enum Transport: String, Sendable, Hashable, CaseIterable, CustomStringConvertible {
        /// TCP byte stream over IPv4 or IPv6.
        case tcp
        /// UDP datagrams over IPv4 or IPv6.
        case udp
        /// Unix-domain byte stream, by path or abstract name.
        case unix
        /// A byte stream between two loops of this process, by listener
        /// name (`inproc:NAME`): sent buffers move to the peer by
        /// reference, with no copy and no system call. It needs no kernel
        /// backend; its backend is always `auto`.
        case inproc

        /// The name the command line and ``Probe`` use: `tcp`, `udp`, `unix`, `inproc`.
        public var description: String { rawValue }
    }

    /// The engine that moves the bytes.
    public enum Backend: String, Sendable, Hashable, CaseIterable, CustomStringConvertible {
        /// The best backend available on this machine.
        case auto
        /// Kernel sockets driven by epoll.
        case socket
        /// io_uring submission and completion rings.
        case ioUring = "io_uring"
        /// RDMA connection manager (needs RDMA hardware).
        case rdmacm
        /// NVIDIA XLIO user-space TCP (needs a supported NIC).
        case xlio

        /// The name the command line and ``Probe`` use (`io_uring`, not `ioUring`).
        public var description: String { rawValue }
    }

    /// The channel semantics.
    public var transport: Transport
    /// The requested backend.
    public var backend: Backend
    /// The security layer over the stream (a TLS context, set through
    /// `EvplTLS`'s `EvplProtocol.init(_:backend:tls:)`), or `nil` for plain
    /// bytes.
    package var security: (any StreamSecurityContext)?

    /// Creates a protocol choice with no security layer.
    public init(_ transport: Transport, backend: Backend = .auto) {
        self.transport = transport
        self.backend = backend
    }

    /// Protocols are equal when they name the same transport, backend and
    /// security context (the same object).
    public static func == (lhs: EvplProtocol, rhs: EvplProtocol) -> Bool {
        lhs.transport == rhs.transport && lhs.backend == rhs.backend && lhs.security === rhs.security
    }

    /// Hashes the transport, the backend and the security context's identity.
    public func hash(into hasher: inout Hasher) {
        hasher.combine(transport)
        hasher.combine(backend)
        hasher.combine(security.map { ObjectIdentifier($0) })
    }

    /// TCP on the best available backend.
    public static let tcp = EvplProtocol(.tcp)
    /// UDP on the best available backend.
    public static let udp = EvplProtocol(.udp)
    /// Unix stream on the best available backend.
    public static let unix = EvplProtocol(.unix)

    /// Whether the transport is a byte stream (as opposed to datagrams).
    public var isStream: Bool { transport != .udp }

    /// `tcp/socket`, `udp/auto`, `tcp+tls/io_uring`, ...
    public var description: String { "\(transport.rawValue)\(security == nil ? "" : "+tls")/\(backend.rawValue)" }

    /// The backend `auto` stands for here, or an `.unavailable` error naming
    /// why the requested backend cannot be used on this machine.
    ///
    /// `auto` means io_uring when the kernel offers everything the backend
    /// needs (``Probe`` says what it found), and kernel sockets otherwise.
    public func resolvedBackend() throws(EvplError) -> Backend {
        if transport == .inproc {
            guard backend == .auto else {
                throw EvplError(.unavailable, operation: "select backend", context: "\(self): in-process streams run on no kernel backend; use auto")
            }
            return .auto
        }
        switch backend {
        case .auto:
            return Probe.unavailableReason(for: .ioUring) == nil ? .ioUring : .socket
        case .socket:
            return .socket
        case .ioUring:
            if let reason = Probe.unavailableReason(for: .ioUring) {
                throw EvplError(.unavailable, operation: "select backend", context: "\(self): \(reason)")
            }
            return .ioUring
        case .rdmacm, .xlio:
            let reason = Probe.unavailableReason(for: backend) ?? "not implemented for network protocols yet"
            throw EvplError(.unavailable, operation: "select backend", context: "\(self): \(reason)")
        }
    }

    /// What `auto` selects and why, as `evpl probe` reports it.
    public static var autoSelectionReason: String {
        if let reason = Probe.unavailableReason(for: .ioUring) {
            return "selects socket for every protocol: io_uring is unavailable (\(reason))"
        }
        return "selects io_uring for every protocol: the kernel offers every io_uring feature the backend needs"
    }

    /// Checks that the security layer, when set, runs over a stream in the
    /// role the operation plays.
    func validateSecurity(server: Bool, operation: String) throws(EvplError) {
        guard let security else { return }
        guard isStream else {
            throw EvplError(.unavailable, operation: operation, context: "\(self): TLS runs over stream protocols (DTLS is not implemented)")
        }
        guard security.isServer == server else {
            throw EvplError(.invalidArgument, operation: operation,
                            context: "\(self): a \(server ? "listener" : "connect") needs a \(server ? "server" : "client") TLS context")
        }
    }

    /// Checks that `address` is the kind this transport uses.
    func validate(_ address: SocketAddress, operation: String) throws(EvplError) {
        let wantsUnix = transport == .unix
        if wantsUnix != address.isUnix || (transport == .inproc) != address.isInProcess {
            throw EvplError(.invalidAddress, operation: operation, context: "\(address) is not a \(transport.rawValue) address")
        }
    }
}
