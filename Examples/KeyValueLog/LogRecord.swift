import Evpl
#if canImport(Glibc)
import Glibc
#endif

/// The key-value servers' log: one record per SET or DELETE, appended in
/// the order they were answered. A record is the key's length and the
/// value's length (4 bytes each, big-endian), then the key (UTF-8) and the
/// value's bytes; a DELETE's value length is `0xFFFFFFFF` and it has no
/// value.
public enum LogRecord {
    /// The value length that marks a deletion.
    static let deletionMark = UInt32.max

    /// The record that sets `key` to `value`, or deletes `key` when `value` is `nil`.
    public static func encoded(key: String, value: [UInt8]?) -> [UInt8] {
        let key = Array(key.utf8)
        var record: [UInt8] = []
        record.reserveCapacity(8 + key.count + (value?.count ?? 0))
        for length in [UInt32(key.count), value.map { UInt32($0.count) } ?? deletionMark] {
            withUnsafeBytes(of: length.bigEndian) { record += $0 }
        }
        return record + key + (value ?? [])
    }

    /// The values a log holds, and where its last whole record ends: a
    /// record cut short by a crash is dropped (the next SET overwrites it).
    public static func replay(_ log: [UInt8]) -> (values: [String: [UInt8]], end: Int) {
        var values: [String: [UInt8]] = [:]
        var position = 0
        func length(at index: Int) -> UInt32 { log[index..<(index + 4)].reduce(0) { $0 << 8 | UInt32($1) } }
        while log.count - position >= 8 {
            let keyLength = Int(length(at: position)), valueLength = length(at: position + 4)
            let deletes = valueLength == deletionMark
            let end = position + 8 + keyLength + (deletes ? 0 : Int(valueLength))
            guard end <= log.count else { break }
            let key = String(decoding: log[(position + 8)..<(position + 8 + keyLength)], as: UTF8.self)
            values[key] = deletes ? nil : Array(log[(position + 8 + keyLength)..<end])
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
