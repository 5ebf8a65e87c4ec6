import ArgumentParser
import Evpl
import Logging

/// `--log-level`: what the library tells an operator, on standard error.
struct LoggingOptions: ParsableArguments {
    @Option(help: "Log the library's events at this level and above on standard error (trace, debug, info, notice, warning, error, critical); silent without it.")
    var logLevel: Logger.Level?

    /// The `EVPL_*` configuration, logging at `--log-level`.
    func config() throws(EvplError) -> EvplConfig {
        var config = try EvplConfig.fromProcessEnvironment()
        if let logLevel {
            var logger = Logger(label: "evpl") { label in StreamLogHandler.standardError(label: label) }
            logger.logLevel = logLevel
            config.logger = logger
        }
        return config
    }
}

extension Logger.Level: @retroactive ExpressibleByArgument {}
