/// Carries a loop-bound value into a task that runs on the same loop.
///
/// `@unchecked Sendable` because it is made on a loop's thread and opened
/// only on that thread (by a task that prefers the loop's executor, or
/// after checking ``EventLoopExecutor/isLoopThread``): the value is never
/// used on two threads. Package-wide (EvplHTTP uses it), so that no user
/// can break that rule.
package struct LoopBound<Value>: @unchecked Sendable {
    package let value: Value

    package init(value: Value) {
        self.value = value
    }
}
