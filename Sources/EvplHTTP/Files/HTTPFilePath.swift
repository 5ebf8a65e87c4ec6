import Evpl

/// A request target's path as a file's place under a served directory.
struct HTTPFilePath: Equatable {
    /// The path relative to the served directory, `.` for the directory itself.
    var relative: String
    /// Whether the target ended with `/`, naming a directory.
    var namesDirectory: Bool

    /// Reads the path of an origin-form target (`/a/b%20c?q`): the query is
    /// dropped, `%XX` escapes are decoded, `.` segments and empty ones are
    /// skipped and `..` takes the segment before it away. `nil` for a
    /// target that is not a path, a bad escape, a NUL byte, or a `..` that
    /// would climb above the served directory.
    init?(target: String) {
        var path = Substring(target)
        if let end = path.firstIndex(where: { $0 == "?" || $0 == "#" }) { path = path[..<end] }
        guard path.first == "/" else { return nil }
        guard let decoded = PercentDecoding.decode(path.utf8), !decoded.contains(0) else { return nil }
        var segments: [ArraySlice<UInt8>] = []
        for segment in decoded.split(separator: UInt8(ascii: "/"), omittingEmptySubsequences: true) {
            if segment.elementsEqual(".".utf8) { continue }
            if segment.elementsEqual("..".utf8) {
                guard segments.popLast() != nil else { return nil }
                continue
            }
            segments.append(segment)
        }
        relative = segments.isEmpty ? "." : String(decoding: Array(segments.joined(separator: [UInt8(ascii: "/")])), as: UTF8.self)
        namesDirectory = decoded.last == UInt8(ascii: "/")
    }

    /// ``relative`` as a URI path: unreserved bytes and `/` as they are,
    /// every other byte `%XX`.
    var percentEncoded: String {
        guard relative != "." else { return "" }
        let digits = Array("0123456789ABCDEF".utf8)
        var encoded: [UInt8] = []
        for byte in relative.utf8 {
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
}
