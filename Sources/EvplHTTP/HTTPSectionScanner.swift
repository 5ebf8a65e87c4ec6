import Evpl
#if canImport(Glibc)
import Glibc
#endif

/// Finds where a header or trailer section ends in bytes that arrive a
/// piece at a time, looking at each byte once however the pieces fall.
///
/// Every line must end in CRLF: an LF without its CR fails at once (RFC
/// 9112 section 2.2 lets a recipient accept it; this one does not, so that
/// it never frames a message differently from a strict peer). Bare CRs are
/// left to the parser, which sees whole lines.
struct HTTPSectionScanner {
    /// Bytes looked at, from the start of the section.
    private var scanned = 0
    private var lineStart = 0
    /// Where the first line starts: after the empty lines a request may
    /// be preceded by (RFC 9112 section 2.2).
    private(set) var firstLineStart = 0
    /// Where the first non-empty line ends, once found.
    private var firstLineEnd: Int?
    /// The byte before `scanned`.
    private var previous: UInt8 = 0

    /// Starts over for a new section.
    mutating func reset() {
        self = HTTPSectionScanner()
    }

    /// The length of the section through its empty line, or `nil` when it
    /// has not ended in `bytes` yet.
    ///
    /// - Parameters:
    ///   - firstLineLimit: the longest first line (the request line), or
    ///     `nil` for a trailer section, whose first line is a field.
    ///   - sectionLimit: the most bytes after the first line (or in all,
    ///     without one).
    mutating func sectionEnd(in bytes: ReceivedBytes, firstLineLimit: Int?, sectionLimit: Int) throws(HTTPParseError) -> Int? {
        guard bytes.count > scanned else { return nil }
        var end: Int?
        var failure: HTTPParseError?
        var position = scanned
        let hasFirstLine = firstLineLimit != nil
        bytes.subrange(from: scanned, length: bytes.count - scanned).forEachSegment { segment in
            guard end == nil && failure == nil, let base = segment.baseAddress else { return }
            var at = 0
            while at < segment.count, let found = memchr(base + at, Int32(HTTPSyntax.lf), segment.count - at) {
                let index = UnsafeRawPointer(found) - base
                let lf = position + index
                let before = index > 0 ? segment[index - 1] : previous
                guard before == HTTPSyntax.cr else {
                    failure = HTTPParseError(.bareLineBreak, "an LF without a CR")
                    return
                }
                if lf - 1 == lineStart {
                    // An empty line: before the request line it is skipped, after it the section ends.
                    if hasFirstLine && firstLineEnd == nil {
                        firstLineStart = lf + 1
                    } else {
                        end = lf + 1
                        return
                    }
                } else if hasFirstLine && firstLineEnd == nil {
                    firstLineEnd = lf + 1
                }
                lineStart = lf + 1
                at = index + 1
            }
            position += segment.count
            previous = segment[segment.count - 1]
        }
        if let failure { throw failure }
        scanned = end ?? position
        if let firstLineLimit {
            let firstLineLength = (firstLineEnd ?? scanned) - firstLineStart
            if firstLineLength > firstLineLimit { throw HTTPParseError(.requestLineTooLong, "more than \(firstLineLimit) bytes") }
            if let firstLineEnd, scanned - firstLineEnd > sectionLimit {
                throw HTTPParseError(.fieldSectionTooLarge, "more than \(sectionLimit) bytes")
            }
            // Empty lines alone count against the section too: a peer cannot send CRLFs for ever.
            if firstLineStart > sectionLimit { throw HTTPParseError(.invalidRequestLine, "only empty lines") }
        } else if scanned > sectionLimit {
            throw HTTPParseError(.fieldSectionTooLarge, "a trailer section of more than \(sectionLimit) bytes")
        }
        return end
    }
}
