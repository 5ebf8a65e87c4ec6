// swift-tools-version: 6.0
import PackageDescription

let package = Package(
    name: "swift-evpl",
    // Only the library is a product. The `evpl` command line is an
    // executable target of this package (`swift run evpl` builds it here),
    // so a package that depends on Evpl never fetches or builds the command
    // line's dependencies (swift-argument-parser).
    products: [
        .library(name: "Evpl", targets: ["Evpl"]),
        // TLS over any stream; its own product, so that a user who wants
        // plain sockets links no libssl.
        .library(name: "EvplTLS", targets: ["EvplTLS"]),
        // Runs a pool of loops as a swift-service-lifecycle Service; its own
        // product, so that Evpl itself depends on swift-log alone.
        .library(name: "EvplServiceLifecycle", targets: ["EvplServiceLifecycle"]),
        // HTTP/1.0 and 1.1 server on the event loop, with swift-http-types at
        // its surface; its own product, so that Evpl alone links none of it.
        .library(name: "EvplHTTP", targets: ["EvplHTTP"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        // 1.16.2: LogHandler.log(event:), which the tests' capturing handler implements.
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.13.0"),
        .package(url: "https://github.com/apple/swift-http-types", from: "1.8.0"),
    ],
    targets: [
        .target(name: "CEvplLinux"),
        .systemLibrary(name: "CURing", pkgConfig: "liburing", providers: [.apt(["liburing-dev"])]),
        .systemLibrary(name: "CLibAIO", providers: [.apt(["libaio-dev"])]),
        .systemLibrary(name: "COpenSSL", pkgConfig: "openssl", providers: [.apt(["libssl-dev"])]),
        .target(
            name: "Evpl",
            dependencies: ["CEvplLinux", "CURing", "CLibAIO", .product(name: "Logging", package: "swift-log")],
            // Debug builds (the tests) route system calls through a fault plan; release builds call the kernel directly.
            swiftSettings: [.define("EVPL_FAULT_INJECTION", .when(configuration: .debug))]
        ),
        .target(name: "EvplTLS", dependencies: ["Evpl", "COpenSSL"]),
        .target(
            name: "EvplServiceLifecycle",
            dependencies: ["Evpl", .product(name: "ServiceLifecycle", package: "swift-service-lifecycle")]
        ),
        .target(name: "EvplHTTP", dependencies: ["Evpl", "CEvplLinux", .product(name: "HTTPTypes", package: "swift-http-types")]),
        .executableTarget(
            name: "evpl",
            dependencies: [
                "Evpl",
                "EvplTLS",
                "EvplHTTP",
                .product(name: "HTTPTypes", package: "swift-http-types"),
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        // Test-only: an interposed malloc that counts the test thread's allocations.
        .target(name: "CAllocationCounter", path: "Tests/CAllocationCounter"),
        .testTarget(
            name: "EvplTests",
            dependencies: ["Evpl", "EvplTLS", "EvplServiceLifecycle", "EvplHTTP", "CAllocationCounter", .product(name: "Logging", package: "swift-log"),
                           .product(name: "HTTPTypes", package: "swift-http-types"),
                           .product(name: "ServiceLifecycle", package: "swift-service-lifecycle")],
            swiftSettings: [.define("EVPL_FAULT_INJECTION", .when(configuration: .debug))]
        ),
    ],
    swiftLanguageModes: [.v6]
)

// The documentation build (`EVPL_DOCS=1 swift package generate-documentation
// --target Evpl`) needs swift-docc-plugin; nobody else fetches it.
if Context.environment["EVPL_DOCS"] == "1" {
    package.dependencies.append(.package(url: "https://github.com/swiftlang/swift-docc-plugin", from: "1.4.0"))
}
