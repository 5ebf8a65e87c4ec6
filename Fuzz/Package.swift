// swift-tools-version:6.0
// libFuzzer targets for swift-evpl, in a package of their own: they are
// built with -sanitize=fuzzer,address throughout (run.sh).
import PackageDescription

func fuzzTarget(_ name: String, tls: Bool = false, http: Bool = false) -> Target {
    .executableTarget(name: name, dependencies: ["FuzzSupport", .product(name: "Evpl", package: "swift-evpl")]
                          + (tls ? [.product(name: "EvplTLS", package: "swift-evpl")] : [])
                          + (http ? ["FuzzHTTPSupport", .product(name: "EvplHTTP", package: "swift-evpl")] : []))
}

let package = Package(
    name: "EvplFuzz",
    dependencies: [.package(name: "swift-evpl", path: "..")],
    targets: [
        .target(name: "FuzzSupport", dependencies: [.product(name: "Evpl", package: "swift-evpl")]),
        .target(name: "FuzzHTTPSupport", dependencies: ["FuzzSupport", .product(name: "EvplHTTP", package: "swift-evpl")]),
        fuzzTarget("FuzzConfig"),
        fuzzTarget("FuzzAddress"),
        fuzzTarget("FuzzSegmenters"),
        fuzzTarget("FuzzBlockRange"),
        fuzzTarget("FuzzBlockLocation"),
        fuzzTarget("FuzzTLSRecords", tls: true),
        fuzzTarget("FuzzHTTPRequest", http: true),
        fuzzTarget("FuzzHTTPResponse", http: true),
        fuzzTarget("FuzzHTTPFiles", http: true),
    ],
    swiftLanguageModes: [.v6]
)
