#if canImport(Glibc)
import Glibc
#endif

/// The `Date` field value every response carries (RFC 9110 section 6.6.1),
/// in IMF-fixdate form, `Sun, 06 Nov 1994 08:49:37 GMT`, formatted once
/// per second.
struct HTTPDate {
    private var second = -1
    /// The 29 bytes of the current value.
    private(set) var bytes: [UInt8] = []

    private static let days = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"].map { Array($0.utf8) }
    private static let months = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"].map { Array($0.utf8) }

    /// Brings the value up to the current second.
    mutating func update() {
        var now = timespec()
        clock_gettime(CLOCK_REALTIME, &now)
        guard now.tv_sec != second else { return }
        second = now.tv_sec
        bytes = Self.format(secondsSinceEpoch: now.tv_sec)
    }

    /// The IMF-fixdate of a moment.
    static func format(secondsSinceEpoch: Int) -> [UInt8] {
        var seconds = time_t(secondsSinceEpoch)
        var parts = tm()
        gmtime_r(&seconds, &parts)
        var result: [UInt8] = []
        result.reserveCapacity(29)
        func twoDigits(_ value: Int32) {
            result.append(UInt8(ascii: "0") + UInt8(value / 10))
            result.append(UInt8(ascii: "0") + UInt8(value % 10))
        }
        result += days[Int(parts.tm_wday)]
        result += Array(", ".utf8)
        twoDigits(parts.tm_mday)
        result.append(UInt8(ascii: " "))
        result += months[Int(parts.tm_mon)]
        result.append(UInt8(ascii: " "))
        let year = parts.tm_year + 1900
        twoDigits(year / 100)
        twoDigits(year % 100)
        result.append(UInt8(ascii: " "))
        twoDigits(parts.tm_hour)
        result.append(UInt8(ascii: ":"))
        twoDigits(parts.tm_min)
        result.append(UInt8(ascii: ":"))
        twoDigits(parts.tm_sec)
        result += Array(" GMT".utf8)
        return result
    }
}
