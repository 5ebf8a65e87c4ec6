// swift-tools-version: 6.0
// Example servers built on Evpl, in a package of their own that depends on
// the library as any user's package would. `check.sh` builds and runs them.
import PackageDescription

func example(_ name: String) -> Target {
    .executableTarget(name: name, dependencies: [.product(name: "Evpl", package: "swift-evpl")], path: name, exclude: ["README.md"])
}

let package = Package(
    name: "EvplExamples",
    dependencies: [.package(name: "swift-evpl", path: "..")],
    targets: [
        example("EchoServer"), example("KeyValueServer"), example("FileServer"),
        example("AsyncEchoServer"), example("AsyncFileServer"),
    ],
    swiftLanguageModes: [.v6]
)
