// swift-tools-version: 6.0
// Example servers built on Evpl, in a package of their own that depends on
// the library as any user's package would. `check.sh` builds and runs them.
import PackageDescription

func example(_ name: String, using libraries: [Target.Dependency] = []) -> Target {
    .executableTarget(name: name, dependencies: [.product(name: "Evpl", package: "swift-evpl")] + libraries, path: name, exclude: ["README.md"])
}

let package = Package(
    name: "EvplExamples",
    dependencies: [.package(name: "swift-evpl", path: "..")],
    targets: [
        // The key-value servers' log format and request parsing, shared by both versions.
        .target(name: "KeyValueLog", dependencies: [.product(name: "Evpl", package: "swift-evpl")], path: "KeyValueLog"),
        example("EchoServer"), example("KeyValueServer", using: ["KeyValueLog"]), example("FileServer"),
        example("AsyncEchoServer"), example("AsyncKeyValueServer", using: ["KeyValueLog"]), example("AsyncFileServer"),
        example("RangeServer"),
    ],
    swiftLanguageModes: [.v6]
)
