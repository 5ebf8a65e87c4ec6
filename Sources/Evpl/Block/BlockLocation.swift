/// Turns what a caller names a block device by (a path, or a `file:` URI)
/// into the filesystem path to open.
///
/// A location that starts with `scheme://` is a URI: only `file` is
/// supported, with an empty or `localhost` authority and an absolute path
/// whose `%XX` escapes are decoded (RFC 8089). Anything else is a path and
/// is used exactly as written. Either way the result is never empty and
/// never holds a NUL byte (the kernel would see a shorter path than the
/// caller meant).
enum BlockLocation {
    private static let operation = "open block device"

    /// The filesystem path `location` names.
    static func path(from location: String) throws(EvplError) -> String {
        guard !location.isEmpty else { throw invalid(location, "empty path") }
        guard !location.utf8.contains(0) else { throw invalid(location, "a path cannot hold a NUL byte") }
        guard let scheme = scheme(of: location) else { return location }
        guard scheme.lowercased() == "file" else {
            throw invalid(location, "only paths and file:// URIs are supported")
        }
        let afterScheme = location.utf8.dropFirst(scheme.utf8.count + "://".count)
        let slash = afterScheme.firstIndex(of: UInt8(ascii: "/")) ?? afterScheme.endIndex
        let authority = String(Substring(afterScheme[..<slash]))
        guard authority.isEmpty || authority.lowercased() == "localhost" else {
            throw invalid(location, "a file URI names a file on this machine (host \"\(authority)\")")
        }
        let encoded = afterScheme[slash...]
        guard !encoded.isEmpty else { throw invalid(location, "a file URI needs an absolute path") }
        if encoded.contains(UInt8(ascii: "?")) || encoded.contains(UInt8(ascii: "#")) {
            throw invalid(location, "a file URI takes no query or fragment (write ? as %3F, # as %23)")
        }
        let path = try percentDecoded(encoded, location: location)
        guard !path.contains(0) else { throw invalid(location, "a path cannot hold a NUL byte (%00)") }
        guard let text = String(validating: path, as: UTF8.self) else {
            throw invalid(location, "the decoded path is not UTF-8")
        }
        return text
    }

    /// The scheme of `location` when it starts with `scheme://` (RFC 3986:
    /// a letter, then letters, digits, `+`, `-` or `.`), or `nil` for a path.
    private static func scheme(of location: String) -> Substring? {
        guard let colon = location.firstIndex(of: ":"), location[colon...].hasPrefix("://") else { return nil }
        let scheme = location[..<colon]
        guard let first = scheme.unicodeScalars.first, first.isASCII, first.properties.isAlphabetic else { return nil }
        let allowed = scheme.unicodeScalars.allSatisfy { scalar in
            scalar.isASCII && (scalar.properties.isAlphabetic || ("0"..."9").contains(scalar) || "+-.".unicodeScalars.contains(scalar))
        }
        return allowed ? scheme : nil
    }

    /// `bytes` with every `%XX` replaced by the byte it names.
    private static func percentDecoded(_ bytes: Substring.UTF8View.SubSequence, location: String) throws(EvplError) -> [UInt8] {
        guard let decoded = PercentDecoding.decode(bytes) else { throw badEscape(location) }
        return decoded
    }

    private static func badEscape(_ location: String) -> EvplError {
        invalid(location, "a % must be followed by two hex digits")
    }

    private static func invalid(_ location: String, _ reason: String) -> EvplError {
        EvplError(.invalidArgument, operation: operation, context: location.isEmpty ? reason : "\(location.debugDescription): \(reason)")
    }
}
