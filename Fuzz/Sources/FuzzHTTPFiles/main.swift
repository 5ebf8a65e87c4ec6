@testable import EvplHTTP
import FuzzSupport

// The request fields the file server reads, as a peer may write them:
// `Range` against a size, a target's path, `If-None-Match` lists and
// IMF-fixdates. None may crash. A range is inside the file or refused; a
// path never climbs out (no `..` segment, no leading `/`, no NUL); a date
// that parses formats back to text that parses to the same moment.
//
// Input: [which, 8 bytes: a size, text...].

runFuzzer { bytes in
    guard bytes.count >= 9 else { return }
    let size = bytes[1..<9].reduce(UInt64(0)) { $0 << 8 | UInt64($1) } >> UInt64(bytes[0] & 63)
    let text = String(decoding: bytes[9...], as: UTF8.self)
    switch bytes[0] >> 6 {
    case 0:
        switch HTTPByteRange(field: text, size: size) {
        case .part(let first, let last):
            precondition(first <= last && last < size, "\(text.debugDescription) against \(size): \(first)-\(last)")
        case .unsatisfiable, .whole:
            break
        }
    case 1:
        guard let path = HTTPFilePath(target: text) else { return }
        let segments = path.relative.split(separator: "/", omittingEmptySubsequences: false)
        precondition(!path.relative.hasPrefix("/") && !path.relative.utf8.contains(0), "\(text.debugDescription) gave \(path.relative.debugDescription)")
        precondition(!segments.contains("..") && !segments.contains("") && (path.relative == "." || !segments.contains(".")),
                     "\(text.debugDescription) gave \(path.relative.debugDescription)")
    case 2:
        _ = HTTPEntityTag.list(text, contains: "\"a-1\"", weakComparison: bytes[0] & 1 == 0)
    default:
        guard let moment = HTTPDate.parse(Substring(text)) else { return }
        var formatted = [UInt8](repeating: 0, count: 29)
        HTTPDate.format(secondsSinceEpoch: moment, into: &formatted)
        let again = HTTPDate.parse(Substring(String(decoding: formatted, as: UTF8.self)))
        precondition(again == moment, "\(text.debugDescription) is \(moment), formatted \(String(decoding: formatted, as: UTF8.self)) is \(String(describing: again))")
    }
}
