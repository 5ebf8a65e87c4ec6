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
}
