#if canImport(Glibc)
import Glibc
#endif

/// libFuzzer's entry point for a program that has its own `main`
/// (SwiftPM gives every executable one).
@_silgen_name("LLVMFuzzerRunDriver")
private func llvmFuzzerRunDriver(
    _ argc: UnsafeMutablePointer<Int32>,
    _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>>,
    _ callback: @convention(c) (UnsafePointer<UInt8>?, Int) -> Int32
) -> Int32

/// The input handler of the running fuzzer (one per process).
nonisolated(unsafe) private var currentBody: ((UnsafeRawBufferPointer) -> Void)?

/// libFuzzer's library refers to this symbol even when driven through
/// `LLVMFuzzerRunDriver`: it runs one input.
@_cdecl("LLVMFuzzerTestOneInput")
public func llvmFuzzerTestOneInput(_ data: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
    currentBody?(UnsafeRawBufferPointer(start: data, count: size))
    return 0
}

/// Runs libFuzzer over `body` with the process's arguments (libFuzzer's own
/// flags: `-max_total_time=30`, a corpus folder, ...) and exits with its status.
public func runFuzzer(_ body: @escaping (UnsafeRawBufferPointer) -> Void) -> Never {
    currentBody = body
    var argc = CommandLine.argc
    var argv = CommandLine.unsafeArgv
    let status = llvmFuzzerRunDriver(&argc, &argv, llvmFuzzerTestOneInput)
    exit(status)
}
