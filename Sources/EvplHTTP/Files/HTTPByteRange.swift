/// What a `Range` field (RFC 9110 section 14.2) asks of a representation
/// of a known size.
enum HTTPByteRange: Equatable {
    /// The whole representation: no `Range`, or one the server ignores (another
    /// unit, a syntax error, or several ranges, for which this server sends
    /// the whole instead of `multipart/byteranges`, as section 14.2 allows).
    case whole
    /// One range, both ends included, inside the representation.
    case part(first: UInt64, last: UInt64)
    /// No range overlaps the representation: 416.
    case unsatisfiable

    /// Reads `bytes=first-last`, `bytes=first-` and `bytes=-suffix` (and
    /// lists of them) against `size` bytes.
    init(field: String?, size: UInt64) {
        guard let field else {
            self = .whole
            return
        }
        let text = Substring(field)
        guard let equals = text.firstIndex(of: "="), text[..<equals].lowercased() == "bytes" else {
            self = .whole
            return
        }
        var satisfiable: [(UInt64, UInt64)] = []
        var specs = 0
        for spec in text[text.index(after: equals)...].split(separator: ",", omittingEmptySubsequences: false) {
            let spec = spec.trimmingHTTPWhitespace()
            // RFC 9110 section 5.6.1: empty list elements are allowed and skipped.
            if spec.isEmpty { continue }
            specs += 1
            guard let dash = spec.firstIndex(of: "-") else {
                self = .whole
                return
            }
            let firstText = spec[..<dash]
            let lastText = spec[spec.index(after: dash)...]
            if firstText.isEmpty {
                guard let suffix = Self.digits(lastText) else {
                    self = .whole
                    return
                }
                if suffix > 0 && size > 0 { satisfiable.append((size - min(suffix, size), size - 1)) }
                continue
            }
            guard let first = Self.digits(firstText) else {
                self = .whole
                return
            }
            var last = UInt64.max
            if !lastText.isEmpty {
                guard let value = Self.digits(lastText), value >= first else {
                    self = .whole
                    return
                }
                last = value
            }
            if first < size { satisfiable.append((first, min(last, size - 1))) }
        }
        guard specs > 0 else {
            self = .whole
            return
        }
        switch satisfiable.count {
        case 0: self = .unsatisfiable
        case 1: self = .part(first: satisfiable[0].0, last: satisfiable[0].1)
        default: self = .whole
        }
    }

    /// A run of decimal digits that fits 64 bits, or `nil`.
    private static func digits(_ text: Substring) -> UInt64? {
        guard !text.isEmpty, text.utf8.allSatisfy({ (UInt8(ascii: "0")...UInt8(ascii: "9")).contains($0) }) else { return nil }
        return UInt64(text)
    }
}

extension Substring {
    /// Without the spaces and tabs (OWS) at either end.
    func trimmingHTTPWhitespace() -> Substring {
        var text = self
        while let first = text.first, first == " " || first == "\t" { text.removeFirst() }
        while let last = text.last, last == " " || last == "\t" { text.removeLast() }
        return text
    }
}
