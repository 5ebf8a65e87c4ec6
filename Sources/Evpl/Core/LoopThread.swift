import CEvplLinux
#if canImport(Glibc)
import Glibc
#endif

/// Starts joinable POSIX threads running a Swift closure, with a name.
package enum LoopThread {
    private final class Body {
        let name: String
        let work: () -> Void
        let faultPlan = InheritedFaultPlan()
        init(name: String, work: @escaping () -> Void) {
            self.name = name
            self.work = work
        }
    }

    /// Spawns a thread running `work`; join it with `pthread_join`. In test
    /// builds the thread inherits the spawning thread's fault plan.
    package static func spawn(name: String, _ work: @escaping @Sendable () -> Void) throws(EvplError) -> pthread_t {
        let body = Unmanaged.passRetained(Body(name: name, work: work))
        var thread = pthread_t()
        let status = SystemCalls.threadCreate(&thread, { argument in
            let body = Unmanaged<Body>.fromOpaque(argument!).takeRetainedValue()
            cevpl_set_thread_name(body.name)
            body.faultPlan.adopted(body.work)
            return nil
        }, body.toOpaque())
        guard status == 0 else {
            body.release()
            throw EvplError(errno: status, operation: "pthread_create", context: name)
        }
        return thread
    }
}
