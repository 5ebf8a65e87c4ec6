import HTTPTypes
#if canImport(Glibc)
import Glibc
#endif

/// Reads the field lines of a header or trailer section (RFC 9112
/// section 5): `field-name ":" OWS field-value OWS CRLF`, strictly.
enum HTTPFieldLines {
    /// The start line (without its CRLF) and the field section (each line
    /// with its CRLF, the empty line left out) of a whole head.
    static func splitHead(_ bytes: UnsafeRawBufferPointer) throws(HTTPParseError) -> (startLine: UnsafeRawBufferPointer, section: UnsafeRawBufferPointer) {
        var lineEnd = 0
        while lineEnd < bytes.count && bytes[lineEnd] != HTTPSyntax.cr && bytes[lineEnd] != HTTPSyntax.lf { lineEnd += 1 }
        guard lineEnd + 1 < bytes.count, bytes[lineEnd] == HTTPSyntax.cr, bytes[lineEnd + 1] == HTTPSyntax.lf else {
            throw HTTPParseError(.bareLineBreak, "a CR or LF alone in the start line")
        }
        return (UnsafeRawBufferPointer(rebasing: bytes[0..<lineEnd]), UnsafeRawBufferPointer(rebasing: bytes[(lineEnd + 2)..<(bytes.count - 2)]))
    }

    /// Makes field `index` of `fields` the line `name: value`, keeping the
    /// field already there when it is the same line. A kept-alive peer
    /// repeats most of its fields from one message to the next, and a value
    /// past 15 bytes (a `Date`, a `User-Agent`) costs an allocation each
    /// time it is made anew. Fields are put at 0, 1, 2... in turn.
    static func put(_ fields: inout HTTPFields, at index: Int, name: UnsafeRawBufferPointer, value: UnsafeRawBufferPointer) throws(HTTPParseError) {
        guard index < fields.count else {
            fields.append(try field(name: name, value: value))
            return
        }
        let existing = fields[index]
        if same(existing.name.rawName, name) && same(existing.value, value) { return }
        fields[index] = try field(name: name, value: value)
    }

    /// Whether `text` is exactly `bytes`, or both are absent.
    static func same(_ text: String?, _ bytes: UnsafeRawBufferPointer?) -> Bool {
        guard let text, let bytes else { return text == nil && bytes == nil }
        return same(text, bytes)
    }

    /// Whether `text` is exactly `bytes`: a length check and one `memcmp`
    /// (a generic comparison walks a string's UTF-8 view index by index).
    static func same(_ text: String, _ bytes: UnsafeRawBufferPointer) -> Bool {
        var text = text
        return text.withUTF8 { utf8 in
            utf8.count == bytes.count && (bytes.isEmpty || memcmp(utf8.baseAddress!, bytes.baseAddress!, bytes.count) == 0)
        }
    }

    /// Drops the fields a previous message had past the `count` this one put.
    static func truncate(_ fields: inout HTTPFields, to count: Int) {
        if count < fields.count { fields.removeSubrange(count..<fields.count) }
    }

    /// Calls `body` with the name and trimmed value of each field line of
    /// `section`, which holds whole lines, each ending in CRLF, and no
    /// empty line. Throws at the first malformed line, or past `maximumCount`
    /// lines.
    static func forEach(
        in section: UnsafeRawBufferPointer,
        maximumCount: Int,
        _ body: (_ name: UnsafeRawBufferPointer, _ value: UnsafeRawBufferPointer) throws(HTTPParseError) -> Void
    ) throws(HTTPParseError) {
        var lineStart = 0
        var count = 0
        while lineStart < section.count {
            let first = section[lineStart]
            if first == HTTPSyntax.space || first == HTTPSyntax.tab {
                throw HTTPParseError(.obsoleteLineFolding, "a field line starts with whitespace")
            }
            var colon = lineStart
            while colon < section.count && HTTPSyntax.isTokenByte(section[colon]) { colon += 1 }
            guard colon < section.count, section[colon] == HTTPSyntax.colon, colon > lineStart else {
                throw HTTPParseError(.invalidField, colon < section.count && (section[colon] == HTTPSyntax.space || section[colon] == HTTPSyntax.tab)
                                     ? "whitespace between a field name and its colon" : "a field name that is not a token")
            }
            var end = colon + 1
            while end < section.count && HTTPSyntax.isFieldValueByte(section[end]) { end += 1 }
            // The scanner ended every line with CRLF; anything else here is a stray byte.
            guard end + 1 < section.count, section[end] == HTTPSyntax.cr, section[end + 1] == HTTPSyntax.lf else {
                throw end < section.count && section[end] == HTTPSyntax.cr
                    ? HTTPParseError(.bareLineBreak, "a CR inside a field value")
                    : HTTPParseError(.invalidField, "a control byte in a field value")
            }
            count += 1
            guard count <= maximumCount else { throw HTTPParseError(.tooManyFields, "more than \(maximumCount) field lines") }
            let name = UnsafeRawBufferPointer(rebasing: section[lineStart..<colon])
            let value = HTTPSyntax.trimmingWhitespace(UnsafeRawBufferPointer(rebasing: section[(colon + 1)..<end]))
            try body(name, value)
            lineStart = end + 2
        }
    }

    /// The field `name: value`, both already checked against the grammar.
    static func field(name: UnsafeRawBufferPointer, value: UnsafeRawBufferPointer) throws(HTTPParseError) -> HTTPField {
        guard let fieldName = HTTPField.Name(String(decoding: name, as: UTF8.self)) else {
            throw HTTPParseError(.invalidField, "a field name that is not a token")
        }
        return HTTPField(name: fieldName, value: value)
    }

    /// A trailer section's fields.
    static func parseTrailers(_ section: UnsafeRawBufferPointer, limits: HTTPLimits) throws(HTTPParseError) -> HTTPFields {
        var fields = HTTPFields()
        try forEach(in: section, maximumCount: limits.fieldCount) { (name, value) throws(HTTPParseError) in
            fields.append(try field(name: name, value: value))
        }
        return fields
    }
}
