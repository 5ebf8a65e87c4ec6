// What one suspend and resume costs in the Swift runtime alone, next to a
// callback, on a loop with nothing else to do: the floor under any async
// layer that resumes tasks from an event loop, swift-evpl's included.
//
// Both sides run the same loop: each turn runs the jobs made ready, then
// completes every operation issued. The callback side calls a handler per
// completion, which issues the next operation. The async side has one task
// per operation in flight, preferring the loop as its task executor (as
// swift-evpl's tasks do), each awaiting a continuation in a
// `nonisolated(nonsending)` function (as swift-evpl's awaits are) that the
// loop resumes. Nothing is allocated per operation on either side.
//
//   swiftc -O -swift-version 6 Benchmarks/ResumeFloor/main.swift -o resume-floor
//   resume-floor callbacks|async [OPERATIONS] [DEPTH]    prints operations per second
import Dispatch
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// A task executor whose jobs run on the thread that turns it.
final class MinimalLoop: TaskExecutor, @unchecked Sendable {
    // Sendable because jobs from other threads go through `remote`, under
    // its lock; everything else is touched on the loop thread only.
    private let thread = pthread_self()
    private var ready: [UnownedJob] = []
    private var running: [UnownedJob] = []
    private let remote = Mutex<[UnownedJob]>([])
    var waiting: [UnsafeContinuation<Int, Never>] = []
    private var resuming: [UnsafeContinuation<Int, Never>] = []

    func enqueue(_ job: consuming ExecutorJob) {
        if pthread_equal(thread, pthread_self()) != 0 {
            ready.append(UnownedJob(job))
        } else {
            let job = UnownedJob(job)
            remote.withLock { $0.append(job) }
        }
    }

    /// Runs the ready jobs, then completes every operation waiting.
    func turn() {
        remote.withLock { jobs in
            ready += jobs
            jobs.removeAll(keepingCapacity: true)
        }
        swap(&ready, &running)
        for job in running { job.runSynchronously(on: asUnownedTaskExecutor()) }
        running.removeAll(keepingCapacity: true)
        swap(&waiting, &resuming)
        for continuation in resuming { continuation.resume(returning: 1) }
        resuming.removeAll(keepingCapacity: true)
    }
}

/// One operation: suspends until the loop's next turn completes it.
nonisolated(nonsending) func operation(on loop: MinimalLoop) async -> Int {
    await withUnsafeContinuation { loop.waiting.append($0) }
}

/// Hands the loop to its tasks, which touch it only on the loop thread.
struct Unchecked<Value>: @unchecked Sendable { let value: Value }

/// Counts the tasks that have finished.
final class Finished: Sendable {
    let count = Atomic<Int>(0)
}

func now() -> Double {
    var time = timespec()
    clock_gettime(CLOCK_MONOTONIC, &time)
    return Double(time.tv_sec) + Double(time.tv_nsec) / 1e9
}

func runAsync(operations: Int, depth: Int) -> Double {
    let loop = MinimalLoop()
    let finished = Finished()
    let shared = Unchecked(value: loop)
    let start = now()  // starting the tasks is nothing next to millions of operations
    for _ in 0..<depth {
        Task(executorPreference: loop) {
            var total = 0
            for _ in 0..<(operations / depth) { total &+= await operation(on: shared.value) }
            precondition(total == operations / depth)
            finished.count.add(1, ordering: .releasing)
        }
    }
    while finished.count.load(ordering: .acquiring) < depth { loop.turn() }
    return Double(operations / depth * depth) / (now() - start)
}

func runCallbacks(operations: Int, depth: Int) -> Double {
    var issued: [Int] = Array(0..<depth), completing: [Int] = []
    var done = 0
    func completed(_ slot: Int) {
        done += 1
        if done <= operations - depth { issued.append(slot) }
    }
    let start = now()
    while !issued.isEmpty {
        swap(&issued, &completing)
        for slot in completing { completed(slot) }
        completing.removeAll(keepingCapacity: true)
    }
    return Double(done) / (now() - start)
}

let arguments = CommandLine.arguments
let operations = arguments.count > 2 ? Int(arguments[2]) ?? 4_000_000 : 4_000_000
let depth = arguments.count > 3 ? Int(arguments[3]) ?? 32 : 32
switch arguments.count > 1 ? arguments[1] : "" {
case "callbacks": print(Int(runCallbacks(operations: operations, depth: depth)))
case "async": print(Int(runAsync(operations: operations, depth: depth)))
default:
    print("usage: resume-floor callbacks|async [OPERATIONS] [DEPTH]")
    exit(2)
}
