import Logging

/// A value that takes no part in its owner's equality and hashing: two
/// configurations that differ only in where they log are the same settings.
struct IgnoredInEquality<Value: Sendable>: Sendable, Hashable {
    var value: Value

    static func == (lhs: Self, rhs: Self) -> Bool { true }
    func hash(into hasher: inout Hasher) {}
}

extension Logger {
    /// The library's default: discards everything, whatever the process's
    /// `LoggingSystem` is bootstrapped with. A library speaks only when its
    /// user gives it a logger (``EvplConfig/logger``).
    public static let evplSilent = Logger(label: "evpl", factory: { _ in SwiftLogNoOpLogHandler() })
}
