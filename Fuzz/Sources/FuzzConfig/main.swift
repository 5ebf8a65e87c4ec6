import Evpl
import FuzzSupport

// Arbitrary `EVPL_*` settings, one `NAME=value` per line: each is applied
// or rejected with a typed error; parsing never traps.
runFuzzer { bytes in
    var environment: [String: String] = [:]
    for line in String(decoding: bytes, as: UTF8.self).split(separator: "\n") {
        let parts = line.split(separator: "=", maxSplits: 1)
        guard let name = parts.first else { continue }
        environment["EVPL_" + name] = parts.count > 1 ? String(parts[1]) : ""
    }
    _ = try? EvplConfig.fromEnvironment(environment)
}
