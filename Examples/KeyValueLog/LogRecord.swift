import Evpl
#if canImport(Glibc)
import Glibc
#endif

/// The key-value servers' log: one record per SET, appended in the order
/// the SETs were answered. A record is the key's length and the value's
/// length (4 bytes each, big-endian), then the key and the value, UTF-8.
public enum LogRecord {
    /// The record that sets `key` to `value`.
    public static func encoded(key: String, value: String) -> [UInt8] {
        let key = Array(key.utf8), value = Array(value.utf8)
        var record: [UInt8] = []
        for length in [key.count, value.count] {
            withUnsafeBytes(of: UInt32(length).bigEndian) { record += $0 }
        }
        return record + key + value
    }

    /// The values a log holds, and where its last whole record ends: a
    /// record cut short by a crash is dropped (the next SET overwrites it).
    public static func replay(_ log: [UInt8]) -> (values: [String: String], end: Int) {
        var values: [String: String] = [:]
        var position = 0
        func length(at index: Int) -> Int { log[index..<(index + 4)].reduce(0) { $0 << 8 | Int($1) } }
        while log.count - position >= 8 {
            let keyLength = length(at: position), valueLength = length(at: position + 4)
            let end = position + 8 + keyLength + valueLength
            guard end <= log.count else { break }
            let key = String(decoding: log[(position + 8)..<(position + 8 + keyLength)], as: UTF8.self)
            values[key] = String(decoding: log[(position + 8 + keyLength)..<end], as: UTF8.self)
            position = end
        }
        return (values, position)
    }

    /// Cuts the log at `path` back to `end`, the end of its last whole
    /// record, when a record torn by a crash follows it: otherwise stale
    /// bytes past the next (shorter) record could read as a record of their
    /// own at the next start.
    public static func cutTornTail(of path: String, at end: UInt64, size: UInt64) throws(EvplError) {
        guard end < size else { return }
        if truncate(path, off_t(end)) != 0 {
            throw EvplError(.system, operation: "truncate", context: path)
        }
    }
}
