#if canImport(Glibc)
import Glibc
#endif

/// An error from swift-evpl: what failed, the `errno` behind it (0 when the
/// failure did not come from the kernel) and the context it happened in
/// (an address, a path, a configuration key).
public struct EvplError: Error, Sendable, Hashable, CustomStringConvertible {
    /// The category of failure, for code that reacts to specific errors.
    public enum Code: Sendable, Hashable {
        /// The address is already bound by another socket (`EADDRINUSE`).
        case addressInUse
        /// Nothing listens at the destination (`ECONNREFUSED`, or a missing Unix socket path).
        case connectionRefused
        /// The peer reset the connection (`ECONNRESET`, `EPIPE`).
        case connectionReset
        /// The address text could not be parsed or names no usable endpoint.
        case invalidAddress
        /// A Unix socket path or abstract name exceeds what `sockaddr_un` holds.
        case pathTooLong
        /// The process or system ran out of file descriptors (`EMFILE`, `ENFILE`).
        case tooManyOpenFiles
        /// A configuration value or an argument is out of range.
        case invalidArgument
        /// The protocol or backend is not available on this machine.
        case unavailable
        /// A segmenter rejected the byte stream.
        case framing
        /// The operation is not valid in the object's current state.
        case invalidState
        /// A file or device path does not exist (`ENOENT` outside connecting).
        case notFound
        /// A bounded resource is used up: the buffer pool is at its ceiling
        /// (``EvplConfig/poolMaxBytes``), or the kernel is out of memory
        /// (`ENOMEM`, `ENOBUFS`).
        case resourceExhausted
        /// This side closed the connection abortively (``Connection/close()``,
        /// or a graceful shutdown's deadline): queued bytes were dropped and
        /// the peer saw a reset. An orderly end reports no error at all.
        case aborted
        /// This side's graceful shutdown ended the connection before the
        /// peer ended its stream: everything queued went out, then the end
        /// of stream, but what the peer might still have sent was cut off.
        /// Not the peer's end: a protocol that commits at end of stream
        /// must not commit on this.
        case shutdown
        /// The task awaiting the operation was cancelled.
        case cancelled
        /// The operation did not finish before its deadline.
        case timedOut
        /// The TLS handshake failed: no shared version, cipher or ALPN
        /// protocol, a missing client certificate, or an alert from the
        /// peer; the context has OpenSSL's reason.
        case tlsHandshake
        /// The peer's certificate was refused: untrusted, expired, or not
        /// for the name asked for; the context has the verifier's reason.
        case tlsCertificate
        /// The peer ended the TCP stream without a TLS close_notify: the
        /// data may have been cut short by an attacker or a crash.
        case tlsTruncated
        /// A TLS record could not be read or written after the handshake
        /// (corrupt or forged data); the context has OpenSSL's reason.
        case tls
        /// Any other system call failure; see ``EvplError/errno``.
        case system
    }

    /// The category of failure.
    public var code: Code
    /// The operation that failed, such as `"connect"` or `"bind"`.
    public var operation: String
    /// The `errno` value reported by the kernel, or 0.
    public var errno: Int32
    /// Where it happened: an address, a path or a configuration key.
    public var context: String

    /// Creates an error with an explicit code.
    public init(_ code: Code, operation: String, errno: Int32 = 0, context: String = "") {
        self.code = code
        self.operation = operation
        self.errno = errno
        self.context = context
    }

    /// Creates an error from a failed system call, deriving the code from `errno`.
    public init(errno: Int32, operation: String, context: String = "") {
        // A missing Unix socket path means nobody listens; a missing file is just missing.
        let code = errno == ENOENT && !operation.hasPrefix("connect") ? .notFound : Self.code(forErrno: errno)
        self.init(code, operation: operation, errno: errno, context: context)
    }

    static func code(forErrno value: Int32) -> Code {
        switch value {
        case EADDRINUSE: return .addressInUse
        case ECONNREFUSED, ENOENT: return .connectionRefused
        case ECONNRESET, EPIPE: return .connectionReset
        case EMFILE, ENFILE: return .tooManyOpenFiles
        case ENOMEM, ENOBUFS: return .resourceExhausted
        case EINVAL: return .invalidArgument
        case ETIMEDOUT: return .timedOut
        case EAFNOSUPPORT, EADDRNOTAVAIL: return .invalidAddress
        case ENAMETOOLONG: return .pathTooLong
        default: return .system
        }
    }

    /// A one-line message: `connect 127.0.0.1:9: connection refused (errno 111)`.
    public var description: String {
        var text = operation
        if !context.isEmpty { text += " \(context)" }
        text += ": \(Self.summary(for: code))"
        if errno != 0 {
            text += " (errno \(errno): \(String(cString: strerror(errno))))"
        }
        return text
    }

    private static func summary(for code: Code) -> String {
        switch code {
        case .addressInUse: return "address in use"
        case .connectionRefused: return "connection refused"
        case .connectionReset: return "connection reset by peer"
        case .invalidAddress: return "invalid address"
        case .pathTooLong: return "socket path too long"
        case .tooManyOpenFiles: return "out of file descriptors"
        case .invalidArgument: return "invalid argument"
        case .unavailable: return "unavailable"
        case .framing: return "framing error"
        case .invalidState: return "invalid state"
        case .notFound: return "not found"
        case .resourceExhausted: return "resource exhausted"
        case .aborted: return "closed abortively by this side"
        case .shutdown: return "shut down by this side before the peer ended its stream"
        case .cancelled: return "cancelled"
        case .timedOut: return "timed out"
        case .tlsHandshake: return "TLS handshake failed"
        case .tlsCertificate: return "TLS certificate refused"
        case .tlsTruncated: return "TLS stream truncated (no close_notify)"
        case .tls: return "TLS record error"
        case .system: return "system error"
        }
    }
}

extension EvplError {
    /// The current thread's `errno` as an error for `operation`.
    static func lastErrno(_ operation: String, context: String = "") -> EvplError {
        EvplError(errno: Glibc.errno, operation: operation, context: context)
    }
}
