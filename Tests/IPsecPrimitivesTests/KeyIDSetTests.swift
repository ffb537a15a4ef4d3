import Testing
import TestSupport
@testable import IPsecPrimitives

@Suite struct KeyIDSetTests {
    static func random(_ rng: inout SeededRandom) -> KeyID { KeyID(Int.random(in: 1...15, using: &rng))! }

    /// Every operation agrees with `Set<KeyID>` over random sequences.
    @Test(arguments: 0..<4) func behavesLikeASetOfKeyIDs(seed: UInt64) {
        var rng = SeededRandom(seed: seed)
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
