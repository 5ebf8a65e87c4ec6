#if canImport(Glibc)
import Glibc
#endif

/// The `Date` field value every response carries (RFC 9110 section 6.6.1),
/// in IMF-fixdate form, `Sun, 06 Nov 1994 08:49:37 GMT`, formatted once
/// per second into the same 29 bytes.
struct HTTPDate {
    private var second = -1
    /// The 29 bytes of the current value.
    private(set) var bytes = [UInt8](repeating: 0, count: 29)

    private static let days = Array("SunMonTueWedThuFriSat".utf8)
    private static let months = Array("JanFebMarAprMayJunJulAugSepOctNovDec".utf8)

    /// Brings the value up to the current second.
    mutating func update() {
        var now = timespec()
        clock_gettime(CLOCK_REALTIME, &now)
        guard now.tv_sec != second else { return }
        second = now.tv_sec
        Self.format(secondsSinceEpoch: now.tv_sec, into: &bytes)
    }

    /// Writes the IMF-fixdate of a moment into `bytes` (29 of them).
    static func format(secondsSinceEpoch: Int, into bytes: inout [UInt8]) {
        var seconds = time_t(secondsSinceEpoch)
        var parts = tm()
        gmtime_r(&seconds, &parts)
        let year = Int(parts.tm_year) + 1900
        bytes.withUnsafeMutableBufferPointer { out in
            func put(_ index: Int, _ table: [UInt8], _ entry: Int32) {
                for offset in 0..<3 { out[index + offset] = table[Int(entry) * 3 + offset] }
            }
            func twoDigits(_ index: Int, _ value: Int) {
                out[index] = UInt8(ascii: "0") + UInt8(value / 10 % 10)
                out[index + 1] = UInt8(ascii: "0") + UInt8(value % 10)
            }
            put(0, days, parts.tm_wday)
            out[3] = UInt8(ascii: ",")
            out[4] = UInt8(ascii: " ")
            twoDigits(5, Int(parts.tm_mday))
            out[7] = UInt8(ascii: " ")
            put(8, months, parts.tm_mon)
            out[11] = UInt8(ascii: " ")
            twoDigits(12, year / 100)
            twoDigits(14, year % 100)
            out[16] = UInt8(ascii: " ")
            twoDigits(17, Int(parts.tm_hour))
            out[19] = UInt8(ascii: ":")
            twoDigits(20, Int(parts.tm_min))
            out[22] = UInt8(ascii: ":")
            twoDigits(23, Int(parts.tm_sec))
            out[25] = UInt8(ascii: " ")
            out[26] = UInt8(ascii: "G")
            out[27] = UInt8(ascii: "M")
            out[28] = UInt8(ascii: "T")
        }
    }

    /// The moment an IMF-fixdate names (`Sun, 06 Nov 1994 08:49:37 GMT`), in
    /// seconds since the epoch, or `nil` for anything else. The two obsolete
    /// forms RFC 9110 section 5.6.7 also names (RFC 850 and asctime) are not
    /// read: see the divergence table in the HTTP documentation.
    static func parse(_ text: Substring) -> Int? {
        let bytes = Array(text.utf8)
        guard bytes.count == 29, bytes[3] == UInt8(ascii: ","), bytes[4] == UInt8(ascii: " "), bytes[7] == UInt8(ascii: " "),
              bytes[11] == UInt8(ascii: " "), bytes[16] == UInt8(ascii: " "), bytes[19] == UInt8(ascii: ":"),
              bytes[22] == UInt8(ascii: ":"), bytes[25...28].elementsEqual(" GMT".utf8)
        else { return nil }
        func number(_ range: Range<Int>) -> Int? {
            var value = 0
            for byte in bytes[range] {
                guard (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(byte) else { return nil }
                value = value * 10 + Int(byte - UInt8(ascii: "0"))
            }
            return value
        }
        func name(_ at: Int, in table: [UInt8]) -> Int? {
            stride(from: 0, to: table.count, by: 3).first { table[$0..<$0 + 3].elementsEqual(bytes[at..<at + 3]) }.map { $0 / 3 }
        }
        guard name(0, in: days) != nil, let day = number(5..<7), let month = name(8, in: months), let year = number(12..<16),
              let hour = number(17..<19), let minute = number(20..<22), let second = number(23..<25),
              (1...31).contains(day), hour < 24, minute < 60, second < 61
        else { return nil }
        var parts = tm()
        parts.tm_year = Int32(year - 1900)
        parts.tm_mon = Int32(month)
        parts.tm_mday = Int32(day)
        parts.tm_hour = Int32(hour)
        parts.tm_min = Int32(minute)
        parts.tm_sec = Int32(second)
        return Int(timegm(&parts))
    }
}
