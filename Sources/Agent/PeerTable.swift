/// The controller's peers by name, stored contiguously. A pass over the peers walks the entries in place, and a
/// look-up by name hashes once to find the slot. (From a dictionary of entries, reading one field of an entry
/// copied the whole entry: its strings, arrays and models, retained and released, for every peer of every pass.)
struct PeerTable {
    private var slots: [String: Int] = [:]
    /// In no particular order (a removal moves the last entry into the freed slot).
    private(set) var entries: [PeerEntry] = []

    var count: Int { entries.count }
    var indices: Range<Int> { entries.indices }

    /// The slot of the peer with this name; valid until the next insertion or removal.
    func slot(of name: String) -> Int? { slots[name] }

    /// The entry in a slot, modified in place. (Reading a field through `entries[slot]` borrows it; reading through
    /// this subscript copies the entry first.)
    subscript(slot: Int) -> PeerEntry {
        get { entries[slot] }
        _modify { yield &entries[slot] }
    }

    /// Adds a peer not yet in the table.
    mutating func insert(_ entry: PeerEntry) {
        precondition(slots[entry.peer.name] == nil, "peer \(entry.peer.name) is already in the table")
        slots[entry.peer.name] = entries.count
        entries.append(entry)
    }

    /// Removes the peer with this name, if present.
    mutating func remove(_ name: String) {
        guard let slot = slots.removeValue(forKey: name) else { return }
        let last = entries.count - 1
        if slot != last {
            entries.swapAt(slot, last)
            slots[entries[slot].peer.name] = slot
        }
        entries.removeLast()
    }
}
