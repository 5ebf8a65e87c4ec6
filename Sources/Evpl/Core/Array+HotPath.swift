// Arrays on the loop's hot paths are walked by index (`for index in
// array.indices`), not with `for element in array` or `.first`/`.last`: in
// unoptimized builds those read elements through the generic `Collection`
// witness, whose coroutine frame is heap-allocated on every element. The
// allocation tests (Tests/EvplTests/Core/AllocationTests.swift) run in debug
// builds and catch any that come back.

extension Array {
    /// Empties the array and keeps its storage for reuse.
    ///
    /// `removeAll(keepingCapacity: true)` goes through the generic
    /// `replaceSubrange` and `swift_arrayDestroy`: about 200 instructions per
    /// call under callgrind, paid several times per loop iteration for arrays
    /// that usually hold one element. Popping costs a few per element.
    @inline(__always)
    mutating func removeAllKeepingCapacity() {
        while popLast() != nil {}
    }
}
