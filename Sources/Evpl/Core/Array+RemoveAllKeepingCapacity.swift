extension Array {
    /// Empties the array and keeps its storage for reuse.
    ///
    /// `removeAllKeepingCapacity()` goes through the generic
    /// `replaceSubrange` and `swift_arrayDestroy`: about 200 instructions per
    /// call under callgrind, paid several times per loop iteration for arrays
    /// that usually hold one element. Popping costs a few per element.
    @inline(__always)
    mutating func removeAllKeepingCapacity() {
        while popLast() != nil {}
    }
}
