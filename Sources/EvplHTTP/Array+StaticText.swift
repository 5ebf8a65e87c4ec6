extension Array where Element == UInt8 {
    /// Appends the UTF-8 bytes of a literal with one copy: appending a
    /// string's UTF-8 view goes through the generic sequence path.
    @inline(__always)
    mutating func append(_ text: StaticString) {
        text.withUTF8Buffer { append(contentsOf: $0) }
    }
}
