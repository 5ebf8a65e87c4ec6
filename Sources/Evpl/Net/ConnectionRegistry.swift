/// The open connections of one loop, so the loop can close them all when it
/// shuts down. Slots are reused; no per-connection allocation beyond growth.
struct ConnectionRegistry {
    private var slots: [Connection?] = []
    private var freeSlots: [Int] = []
    private(set) var count = 0

    mutating func insert(_ connection: Connection) {
        if let slot = freeSlots.popLast() {
            slots[slot] = connection
            connection.registrySlot = slot
        } else {
            connection.registrySlot = slots.count
            slots.append(connection)
        }
        count += 1
    }

    mutating func remove(_ connection: Connection) {
        let slot = connection.registrySlot
        guard slot >= 0, slot < slots.count, slots[slot] === connection else { return }
        slots[slot] = nil
        freeSlots.append(slot)
        connection.registrySlot = -1
        count -= 1
        if count == 0 && slots.count >= Self.waveSize {
            // The last of a wave of connections: its tables go too.
            slots = []
            freeSlots = []
        }
    }

    /// Slots past which an emptied registry frees its tables.
    private static let waveSize = 1024

    func all() -> [Connection] {
        slots.compactMap { $0 }
    }
}
