import Logging
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// How ``Listener/serve(on:segmenter:window:_:)`` reports a connection
/// handler that threw.
///
/// An error that says how the peer or the server ended the connection (a
/// reset, a timeout, a truncated or failed TLS stream, bytes a segmenter
/// refused, a shutdown, a close) is the network's doing: it goes to the
/// loop's logger at debug level, since any peer can cause it at will.
/// Anything else is the handler's own failure, which a server's operator
/// must see: it goes to the logger at error level and, while the logger is
/// the silent default, to standard error, one line a second at most (with
/// the count of those not written), so that a peer that makes every
/// handler throw cannot flood it.
enum HandlerFailures {
    /// Whether `error` is the end of the connection rather than a failure
    /// of the handler.
    static func isConnectionEnd(_ error: any Error) -> Bool {
        guard let error = error as? EvplError else { return false }
        switch error.code {
        case .connectionReset, .timedOut, .tlsTruncated, .tlsHandshake, .tlsCertificate, .tls, .framing, .shutdown, .aborted, .cancelled:
            return true
        default:
            return false
        }
    }

    /// When the last line went to standard error, and how many were not
    /// written since.
    private static let standardErrorLines = Locked((lastLine: UInt64(0), unwritten: 0))

    /// Where the lines go: standard error; tests point it at a file of
    /// their own rather than take the whole process's standard error.
    static let standardErrorDescriptor = Atomic<Int32>(STDERR_FILENO)

    /// The shortest time between two lines on standard error.
    static let standardErrorInterval: UInt64 = 1_000_000_000

    /// Reports that the handler serving `peer` threw `error`.
    static func report(_ error: any Error, peer: SocketAddress, logger: Logger) {
        if isConnectionEnd(error) {
            logger.debug("connection ended", metadata: ["peer": "\(peer)", "error": "\(error)"])
            return
        }
        logger.error("connection handler failed", metadata: ["peer": "\(peer)", "error": "\(error)"])
        guard logger.handler is SwiftLogNoOpLogHandler else { return }
        let now = MonotonicClock.nanoseconds()
        let unwritten: Int? = standardErrorLines.withLock { lines in
            guard lines.lastLine == 0 || now &- lines.lastLine >= standardErrorInterval else {
                lines.unwritten += 1
                return nil
            }
            defer { lines = (now, 0) }
            return lines.unwritten
        }
        guard let unwritten else { return }
        var line = "evpl: the connection handler for \(peer) failed: \(error)"
        if unwritten > 0 { line += " (and \(unwritten) more since the last report)" }
        line += "\n"
        let descriptor = standardErrorDescriptor.load(ordering: .relaxed)
        line.withUTF8 { _ = Glibc.write(descriptor, $0.baseAddress, $0.count) }
    }
}
