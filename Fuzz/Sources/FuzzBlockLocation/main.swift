@testable import Evpl
import FuzzSupport

// Block device locations (`openBlockDevice`'s first argument). Any text
// either names a path (never empty, never holding a NUL) or is an
// invalidArgument error; text that is not a file URI is its own path; and
// every absolute path survives the trip through a percent-encoded
// `file://` or `file://localhost` URI, whichever hex digits' case.
//
// Input: [mode, text...].

/// `path` percent-encoded as a URI path: unreserved characters and `/`
/// as they are, every other byte as `%XX` in `uppercase` or lower case hex.
func percentEncoded(_ path: String, uppercase: Bool) -> String {
    let digits = Array((uppercase ? "0123456789ABCDEF" : "0123456789abcdef").utf8)
    var encoded: [UInt8] = []
    for byte in path.utf8 {
        switch byte {
        case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "0")...UInt8(ascii: "9"),
             UInt8(ascii: "-"), UInt8(ascii: "."), UInt8(ascii: "_"), UInt8(ascii: "~"), UInt8(ascii: "/"):
            encoded.append(byte)
        default:
            encoded += [UInt8(ascii: "%"), digits[Int(byte >> 4)], digits[Int(byte & 15)]]
        }
    }
    return String(decoding: encoded, as: UTF8.self)
}

runFuzzer { bytes in
    guard let mode = bytes.first else { return }
    let text = String(decoding: bytes.dropFirst(), as: UTF8.self)
    do throws(EvplError) {
        let path = try BlockLocation.path(from: text)
        precondition(!path.isEmpty && !path.utf8.contains(0), "\(text.debugDescription) gave \(path.debugDescription)")
        precondition(text.lowercased().hasPrefix("file://") || path == text, "\(text.debugDescription) is a path, not \(path.debugDescription)")
    } catch {
        precondition(error.code == .invalidArgument, "\(text.debugDescription): \(error)")
    }

    guard !text.utf8.contains(0) else { return }
    let path = "/" + text
    let host = mode & 1 == 0 ? "" : (mode & 2 == 0 ? "localhost" : "LocalHost")
    let uri = "file://\(host)" + percentEncoded(path, uppercase: mode & 4 == 0)
    do {
        let decoded = try BlockLocation.path(from: uri)
        precondition(decoded == path, "\(uri) gave \(decoded.debugDescription), not \(path.debugDescription)")
    } catch {
        preconditionFailure("\(uri) for \(path.debugDescription): \(error)")
    }
}
