import IPsecPrimitives
import Keys

/// The key functions the controller needs, injectable so the core is tested without real derivation.
public struct KeyOperations: Sendable {
    public var derive: PairKeyDerivation
    /// A one-way fingerprint of a key (never the key), published so peers detect mismatches.
    public var fingerprint: @Sendable (IPsecKey) -> String
    /// Throws a descriptive error when `new` may not replace `current` (same ID, other algorithm or length).
    public var checkRotation: @Sendable (_ new: IPsecKey, _ current: IPsecKey) throws -> Void

    public init(
        derive: @escaping PairKeyDerivation, fingerprint: @escaping @Sendable (IPsecKey) -> String,
        checkRotation: @escaping @Sendable (IPsecKey, IPsecKey) throws -> Void
    ) {
        self.derive = derive
        self.fingerprint = fingerprint
        self.checkRotation = checkRotation
    }
}
