// swift-tools-version: 6.0
// Example servers built on Evpl, in a package of their own that depends on
// the library as any user's package would. `check.sh` builds and runs them.
import PackageDescription

func example(_ name: String, using libraries: [Target.Dependency] = []) -> Target {
    .executableTarget(name: name, dependencies: [.product(name: "Evpl", package: "swift-evpl")] + libraries, path: name, exclude: ["README.md"])
}

/// The HTTP layer and the types at its surface.
let http: [Target.Dependency] = [.product(name: "EvplHTTP", package: "swift-evpl"), .product(name: "HTTPTypes", package: "swift-http-types")]

let package = Package(
    name: "EvplExamples",
    dependencies: [
        .package(name: "swift-evpl", path: ".."),
        .package(url: "https://github.com/apple/swift-http-types", from: "1.8.0"),
    ],
    targets: [
        // The key-value servers' log, its stores (callbacks and async) and request parsing, shared by every version.
        .target(name: "KeyValueLog", dependencies: [.product(name: "Evpl", package: "swift-evpl")], path: "KeyValueLog"),
        // What the two HTTP versions share: how a request names a key, their limits and answers.
        .target(name: "KeyValueHTTP", dependencies: ["KeyValueLog"] + http, path: "KeyValueHTTP"),
        example("EchoServer"), example("KeyValueServer", using: ["KeyValueLog"]), example("FileServer"),
        example("AsyncEchoServer"), example("AsyncKeyValueServer", using: ["KeyValueLog"]), example("AsyncFileServer"),
        example("RangeServer"),
        example("HTTPKeyValueServer", using: ["KeyValueLog", "KeyValueHTTP"] + http),
        example("AsyncHTTPKeyValueServer", using: ["KeyValueLog", "KeyValueHTTP"] + http),
    ],
    swiftLanguageModes: [.v6]
)
