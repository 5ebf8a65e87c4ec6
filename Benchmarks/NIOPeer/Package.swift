// swift-tools-version: 6.0
// The SwiftNIO side of the side-by-side benchmarks: a perf server and client
// speaking what `evpl perf` speaks (echo for ping-pong, a sink for streams),
// in its own package so the Evpl library never depends on NIO.
import PackageDescription

let package = Package(
    name: "NIOPeer",
    dependencies: [
        .package(url: "https://github.com/apple/swift-nio", from: "2.101.2"),
    ],
    targets: [
        .executableTarget(
            name: "nio-perf",
            dependencies: [
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
            ]
        ),
    ],
    swiftLanguageModes: [.v6]
)
