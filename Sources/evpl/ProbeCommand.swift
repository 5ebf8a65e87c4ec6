import ArgumentParser
import Evpl
import EvplTLS

struct ProbeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "probe",
        abstract: "List every protocol, backend and block engine, and whether this machine can use it."
    )

    @Flag(help: "Print a JSON list of {name, kind, available, reason}.")
    var json = false

    func run() {
        let entries = Probe.entries() + Probe.tlsEntries()
        if json {
            let items = entries.map { entry in
                "{\"name\":\(JSON.string(entry.name)),\"kind\":\(JSON.string(entry.kind)),\"available\":\(entry.available),\"reason\":\(JSON.string(entry.reason))}"
            }
            print("[" + items.joined(separator: ",") + "]")
            return
        }
        let nameWidth = entries.map(\.name.count).max() ?? 0
        let kindWidth = entries.map(\.kind.count).max() ?? 0
        for entry in entries {
            let name = entry.name.padding(toLength: nameWidth, withPad: " ", startingAt: 0)
            let kind = entry.kind.padding(toLength: kindWidth, withPad: " ", startingAt: 0)
            let status: String
            if entry.available {
                status = entry.reason.isEmpty ? "available" : "available: \(entry.reason)"
            } else {
                status = "unavailable: \(entry.reason)"
            }
            print("\(kind) \(name)  \(status)")
        }
    }
}

/// Minimal JSON text helpers (the CLI has no Foundation dependency).
enum JSON {
    static func string(_ text: String) -> String {
        var result = "\""
        for scalar in text.unicodeScalars {
            switch scalar {
            case "\"": result += "\\\""
            case "\\": result += "\\\\"
            case "\n": result += "\\n"
            default:
                if scalar.value < 0x20 {
                    let hex = String(scalar.value, radix: 16)
                    result += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
                } else {
                    result.unicodeScalars.append(scalar)
                }
            }
        }
        return result + "\""
    }

    static func number(_ value: Double) -> String {
        value.isFinite ? String(format3(value)) : "0"
    }

    private static func format3(_ value: Double) -> String {
        if value == value.rounded() && abs(value) < 1e15 { return String(Int64(value)) }
        return String((value * 1000).rounded() / 1000)
    }
}

extension String {
    func padding(toLength length: Int, withPad pad: Character, startingAt _: Int) -> String {
        count >= length ? self : self + String(repeating: pad, count: length - count)
    }

    func leftPadded(_ length: Int) -> String {
        count >= length ? self : String(repeating: " ", count: length - count) + self
    }
}
