/// Entity tags (RFC 9110 section 8.8.3): the `ETag` this server gives a
/// file, and the lists `If-None-Match` and `If-Range` compare it with.
enum HTTPEntityTag {
    /// A strong tag from what changes when a file is rewritten: its size and
    /// its modification time to the nanosecond, in hex, quoted.
    static func make(size: UInt64, modifiedSeconds: Int, modifiedNanoseconds: Int) -> String {
        "\"\(String(modifiedSeconds, radix: 16))-\(String(modifiedNanoseconds, radix: 16))-\(String(size, radix: 16))\""
    }

    /// Whether `list` (`*`, or entity tags separated by commas) holds `tag`.
    /// The weak comparison ignores `W/` (what `If-None-Match` uses); the
    /// strong one (`If-Range`) never matches a weak tag.
    static func list(_ list: String, contains tag: String, weakComparison: Bool) -> Bool {
        let bytes = Array(list.utf8)
        let wanted = Array(tag.utf8)
        var index = 0
        func skipSeparators() {
            while index < bytes.count, bytes[index] == UInt8(ascii: " ") || bytes[index] == UInt8(ascii: "\t") || bytes[index] == UInt8(ascii: ",") {
                index += 1
            }
        }
        skipSeparators()
        if index < bytes.count, bytes[index] == UInt8(ascii: "*") { return true }
        while index < bytes.count {
            var weak = false
            if index + 1 < bytes.count, bytes[index] == UInt8(ascii: "W"), bytes[index + 1] == UInt8(ascii: "/") {
                weak = true
                index += 2
            }
            // An opaque tag is quoted and holds no quote (etagc), though it may hold commas.
            guard index < bytes.count, bytes[index] == UInt8(ascii: "\"") else { return false }
            guard let close = bytes[(index + 1)...].firstIndex(of: UInt8(ascii: "\"")) else { return false }
            if (!weak || weakComparison) && bytes[index...close].elementsEqual(wanted) { return true }
            index = close + 1
            skipSeparators()
        }
        return false
    }
}
