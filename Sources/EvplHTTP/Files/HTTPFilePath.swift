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
}
