import IPsecPrimitives

extension NodeRecord {
    /// Refuses a new version of a record that is not newer (`sequence`) or whose key IDs go back while its node
    /// has not rebooted.
    ///
    /// `spi` ("I can receive key N") and `encryptSpi` ("I send with N") only move forward: to the same ID or 1–7
    /// steps ahead (15 → 1 is one step), and never back to none. A peer that followed a record back would send
    /// with a key whose SAs it may already have reclaimed; a replayed old record is the usual way to get one.
    /// A new `bootID` starts over (a rebooted node has lost its SAs and advertises afresh).
    public func checkTransition(from stored: NodeRecord) throws(RegistryError) {
        guard sequence > stored.sequence else {
            throw .rejected(
                status: 409,
                message: "sequence: \(sequence) is not after the stored \(stored.sequence): a replayed or "
                    + "out-of-order write of \(name) (each write needs a larger sequence, e.g. the time in milliseconds)"
            )
        }
        guard stored.bootID == bootID else { return }
        for (field, before, after) in [("spi", stored.spi, spi), ("encryptSpi", stored.encryptSpi, encryptSpi)] {
            guard let before else { continue }
            guard let after else {
                throw .rejected(
                    status: 409,
                    message:
                        "\(field): \(name) advertised key \(before) and may not withdraw it without a reboot (same bootID)"
                )
            }
            guard after == before || before.isOlder(than: after) else {
                throw .rejected(
                    status: 409,
                    message: "\(field): \(after) would move \(name) back from key \(before); "
                        + "key IDs only move 1–7 steps forward while bootID stays the same")
            }
        }
    }
}
