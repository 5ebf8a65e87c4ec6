// swift-tools-version: 6.0
// The SwiftNIO side of the side-by-side benchmarks: a perf server and client
// speaking what `evpl perf` speaks (echo for ping-pong, a sink for streams),
// TLS through NIO-SSL, in its own package so the Evpl library never depends
// on NIO.
import PackageDescription

let package = Package(
    name: "NIOPeer",
    dependencies: [
        .package(url: "https://github.com/apple/swift-nio", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-nio-ssl", from: "2.37.6"),
    ],
    targets: [
        .executableTarget(
            name: "nio-perf",
            dependencies: [
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOTLS", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
            ]
        ),
    ],
    swiftLanguageModes: [.v6]
)
