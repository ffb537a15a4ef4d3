import Testing
@testable import IPsecPrimitives

@Suite struct KeyIDSetTests {
    /// SplitMix64, so a failing sequence can be replayed.
    struct Random: RandomNumberGenerator {
        var state: UInt64
        mutating func next() -> UInt64 {
            state &+= 0x9E37_79B9_7F4A_7C15
            var z = state
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            return z ^ (z >> 31)
        }
    }

    static func random(_ rng: inout Random) -> KeyID { KeyID(Int.random(in: 1...15, using: &rng))! }

    /// Every operation agrees with `Set<KeyID>` over random sequences.
    @Test(arguments: 0..<4) func behavesLikeASetOfKeyIDs(seed: UInt64) {
        var rng = Random(state: seed)
        var mask = KeyIDSet()
        var set = Set<KeyID>()
        for _ in 0..<500 {
            let id = Self.random(&rng)
            let otherSet = Set((0..<Int.random(in: 0...4, using: &rng)).map { _ in Self.random(&rng) })
            let other = KeyIDSet(otherSet)
            switch Int.random(in: 0..<6, using: &rng) {
            case 0: #expect(mask.insert(id).inserted == set.insert(id).inserted)
            case 1: #expect(mask.remove(id) == set.remove(id))
            case 2: #expect(mask.update(with: id) == set.update(with: id))
            case 3: mask.formUnion(other); set.formUnion(otherSet)
            case 4: mask.subtract(other); set.subtract(otherSet)
            default: mask.formSymmetricDifference(other); set.formSymmetricDifference(otherSet)
            }
            #expect(Set(mask) == set)
            #expect(mask.count == set.count && mask.isEmpty == set.isEmpty)
            #expect(mask.contains(id) == set.contains(id))
            #expect(Set(mask.intersection(other)) == set.intersection(otherSet))
            #expect(Set(mask.subtracting(other)) == set.subtracting(otherSet))
            #expect(mask.isSubset(of: other) == set.isSubset(of: otherSet))
            #expect((mask == other) == (set == otherSet))
        }
    }

    @Test func iteratesInAscendingOrderAndPrintsItsMembers() {
        let keys: KeyIDSet = [KeyID(15)!, KeyID(1)!, KeyID(7)!]
        #expect(keys.map(\.rawValue) == [1, 7, 15])
        #expect(keys.description == "[1, 7, 15]")
        #expect(KeyIDSet().description == "[]")
    }
}
