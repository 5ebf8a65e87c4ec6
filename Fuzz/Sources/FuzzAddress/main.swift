import Evpl
import FuzzSupport

// Arbitrary address text: a Unix path, an abstract name, or `host:port`
// with a numeric host (names would go to the resolver). Each parses or
// throws a typed error, and a parsed path or IP address prints as text
// that parses back to the same address (an abstract name may hold bytes
// that do not survive as text).
runFuzzer { bytes in
    guard let mode = bytes.first else { return }
    let text = String(decoding: bytes.dropFirst(), as: UTF8.self)
    let address: SocketAddress?
    switch mode % 3 {
    case 0: address = try? SocketAddress(unixPath: text)
    case 1: address = try? SocketAddress(abstractName: text)
    default:
        let host = text.split(separator: ":", maxSplits: 1, omittingEmptySubsequences: false).first ?? ""
        guard host.allSatisfy({ $0.isHexDigit || ".:[]%".contains($0) }) else { return }
        address = try? SocketAddress(parsing: text)
    }
    guard let address, mode % 3 != 1 else { return }
    let reparsed = try? SocketAddress(parsing: "\(address)")
    precondition(reparsed == address, "\(address) does not parse back (text \(text.debugDescription))")
}
