/// One line of the key-value protocol, without its newline:
///
///     SET key value   ->  OK
///     GET key         ->  VALUE value  |  NOTFOUND
///     anything else   ->  ERROR reason
public enum Request: Equatable {
    case get(key: String)
    case set(key: String, value: String)
    case invalid

    /// The answer to an invalid request.
    public static let usage = "ERROR expected SET key value or GET key"

    /// Parses a line; the value of a SET is the rest of the line, spaces
    /// included.
    public init(line: some Collection<UInt8>) {
        let words = String(decoding: line, as: UTF8.self).split(separator: " ", maxSplits: 2, omittingEmptySubsequences: true)
        switch (words.first, words.count) {
        case ("GET", 2): self = .get(key: String(words[1]))
        case ("SET", 3): self = .set(key: String(words[1]), value: String(words[2]))
        default: self = .invalid
        }
    }
}
