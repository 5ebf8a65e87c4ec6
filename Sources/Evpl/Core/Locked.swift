#if canImport(Glibc)
import Glibc
#endif

/// A value shared between threads, reached only while a `pthread_mutex_t`
/// is held.
///
/// Used instead of the standard library's `Mutex`, whose Linux lock is a
/// futex taken through atomics that ThreadSanitizer does not see: every
/// access it guards is reported as a race, which would bury real ones. The
/// sanitizers intercept `pthread_mutex_lock`, and uncontended it costs the
/// same compare-and-swap.
package final class Locked<Value: Sendable>: @unchecked Sendable {
    // @unchecked: `value` is only read or written between lock and unlock.
    private let mutex: UnsafeMutablePointer<pthread_mutex_t>
    private var value: Value

    /// Guards `value` from now on.
    package init(_ value: Value) {
        self.value = value
        mutex = .allocate(capacity: 1)
        mutex.initialize(to: pthread_mutex_t())
        pthread_mutex_init(mutex, nil)
    }

    deinit {
        pthread_mutex_destroy(mutex)
        mutex.deallocate()
    }

    /// Runs `body` on the value with the lock held.
    package func withLock<Result>(_ body: (inout Value) throws -> Result) rethrows -> Result {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        return try body(&value)
    }
}
