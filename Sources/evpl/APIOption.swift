import ArgumentParser

/// Which layer of the library a command drives: the same measurement runs
/// through either, so the two can be compared side by side.
enum API: String, CaseIterable, ExpressibleByArgument, Sendable {
    /// Handlers called by the loop (the library's base layer).
    case callbacks
    /// Tasks on the loop's executor awaiting connections and block requests.
    case async
}

/// How `evpl blk` drives its requests: the layers of ``API``, plus a
/// completion stream, the async form of a completion queue.
enum BlockAPI: String, CaseIterable, ExpressibleByArgument, Sendable {
    /// A completion handler resubmits each slot.
    case callbacks
    /// One task per request in flight, awaiting it.
    case async
    /// One task submits with tags and takes the completions from
    /// `device.completions()`, suspending only when none is ready.
    case asyncStream = "async-stream"
}

/// A value handed to a task that runs on the loop thread it was made on.
///
/// `@unchecked Sendable` because the CLI only wraps loop-bound state in it
/// to start a task with that loop's executor as its preference, from the
/// loop's own thread: the state never runs on two threads.
struct OnLoop<Value>: @unchecked Sendable {
    let value: Value
}
