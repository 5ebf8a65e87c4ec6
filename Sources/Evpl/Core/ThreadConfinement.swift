#if canImport(Glibc)
import Glibc
#endif

/// Stops the process because a loop-confined object was used from a thread
/// other than its loop's, saying so on standard error: "Fatal error: "
/// then `message`.
///
/// The thread checks trap in release builds too, and the message is what
/// tells the programmer the way in (a task on the loop's executor, or the
/// loop's remote). A `precondition` prints its message only in debug
/// builds (optimized ones print "precondition failure" alone), so the
/// message goes out here with `write(2)`, which allocates nothing and
/// takes no lock (the second thread may have left the heap or a lock in
/// any state), before the trap. Out of line, so that each check stays one
/// compare and a branch where it is inlined.
@inline(never)
func threadConfinementViolated(_ message: StaticString) -> Never {
    stopWithMessage(message)
}

/// Stops the process after writing "Fatal error: " and `message` to
/// standard error, in release builds too, allocating nothing and taking no
/// lock: for a bug in the program that going on would make worse.
@inline(never)
func stopWithMessage(_ message: StaticString) -> Never {
    writeToStandardError("Fatal error: ")
    writeToStandardError(message)
    writeToStandardError("\n")
    abort()
}

/// Writes all of `text` to descriptor 2, ignoring failures (there is no one
/// left to tell).
private func writeToStandardError(_ text: StaticString) {
    text.withUTF8Buffer { bytes in
        var done = 0
        while done < bytes.count {
            let written = write(2, bytes.baseAddress! + done, bytes.count - done)
            if written < 0 && errno == EINTR { continue }
            guard written > 0 else { return }
            done += written
        }
    }
}
