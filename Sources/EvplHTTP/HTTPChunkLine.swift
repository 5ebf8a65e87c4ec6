/// The size line of a chunk (RFC 9112 section 7.1):
/// `1*HEXDIG *( BWS ";" BWS ext-name [ BWS "=" BWS ext-value ] ) CRLF`.
///
/// Extensions are checked against the grammar and dropped: no registered
/// extension exists, and a size a peer could make ambiguous (`0x5`, `+5`,
/// `5 `, a size too large to hold) is refused, as request smuggling
/// through chunk sizes depends on two parsers reading one line differently.
enum HTTPChunkLine {
    /// The chunk size in `line`, which ends with CRLF.
    static func size(_ line: UnsafeRawBufferPointer, limit: Int) throws(HTTPParseError) -> Int {
        let end = line.count - 2
        guard end >= 1, line[end] == HTTPSyntax.cr else { throw HTTPParseError(.invalidChunk, "a chunk line not ended by CRLF") }
        var size = 0
        var index = 0
        while index < end, let digit = HTTPSyntax.hexValue(line[index]) {
            size = size << 4 | digit
            if size > limit { throw HTTPParseError(.bodyTooLarge, "a chunk larger than \(limit) bytes") }
            index += 1
        }
        guard index > 0 else { throw HTTPParseError(.invalidChunk, "a chunk size that is not hexadecimal") }
        try checkExtensions(UnsafeRawBufferPointer(rebasing: line[index..<end]))
        return size
    }

    private static func isWhitespace(_ byte: UInt8) -> Bool { byte == HTTPSyntax.space || byte == HTTPSyntax.tab }

    private static func checkExtensions(_ bytes: UnsafeRawBufferPointer) throws(HTTPParseError) {
        let invalid = HTTPParseError(.invalidChunk, "a malformed chunk extension")
        var index = 0
        func skipWhitespace() { while index < bytes.count && isWhitespace(bytes[index]) { index += 1 } }
        func token() -> Bool {
            let start = index
            while index < bytes.count && HTTPSyntax.isTokenByte(bytes[index]) { index += 1 }
            return index > start
        }
        while index < bytes.count {
            skipWhitespace()
            guard index < bytes.count, bytes[index] == UInt8(ascii: ";") else { throw invalid }
            index += 1
            skipWhitespace()
            guard token() else { throw invalid }
            let afterName = index
            skipWhitespace()
            guard index < bytes.count, bytes[index] == UInt8(ascii: "=") else {
                index = afterName
                continue
            }
            index += 1
            skipWhitespace()
            if index < bytes.count && bytes[index] == UInt8(ascii: "\"") {
                try quotedString(bytes, from: &index)
            } else if !token() {
                throw invalid
            }
        }
    }

    /// Steps over a quoted-string starting at its opening quote.
    private static func quotedString(_ bytes: UnsafeRawBufferPointer, from index: inout Int) throws(HTTPParseError) {
        index += 1
        while index < bytes.count {
            let byte = bytes[index]
            if byte == UInt8(ascii: "\"") {
                index += 1
                return
            }
            if byte == UInt8(ascii: "\\") {
                index += 1
                guard index < bytes.count, HTTPSyntax.isFieldValueByte(bytes[index]) else { break }
            } else if !HTTPSyntax.isFieldValueByte(byte) {
                break
            }
            index += 1
        }
        throw HTTPParseError(.invalidChunk, "a malformed quoted string in a chunk extension")
    }
}
