import CEvplLinux

/// Something registered with a loop's epoll set: a socket, a doorbell, a
/// caller-owned fd. The loop calls it with the ready event mask.
protocol PollSource: AnyObject {
    func handleEvents(_ events: UInt32)
}

/// Maps epoll tokens to their sources. A token carries the slot index and a
/// generation, so an event for a source removed earlier in the same batch
/// (and a slot reused since) is recognised as stale and dropped.
struct PollSourceTable {
    private var sources: [PollSource?] = []
    private var generations: [UInt32] = []
    private var freeSlots: [Int] = []
    /// Sources registered now.
    private(set) var count = 0

    mutating func insert(_ source: PollSource) -> UInt64 {
        let slot: Int
        if let reused = freeSlots.popLast() {
            slot = reused
            sources[slot] = source
        } else {
            slot = sources.count
            sources.append(source)
            generations.append(0)
        }
        count += 1
        return UInt64(generations[slot]) << 32 | UInt64(slot)
    }

    mutating func remove(token: UInt64) {
        let slot = Int(token & 0xffff_ffff)
        guard slot < sources.count, generations[slot] == UInt32(token >> 32), sources[slot] != nil else { return }
        sources[slot] = nil
        generations[slot] &+= 1
        freeSlots.append(slot)
        count -= 1
    }

    func source(for token: UInt64) -> PollSource? {
        let slot = Int(token & 0xffff_ffff)
        guard slot < sources.count, generations[slot] == UInt32(token >> 32) else { return nil }
        return sources[slot]
    }
}
