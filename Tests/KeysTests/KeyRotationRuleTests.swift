import IPsecPrimitives
import Testing
@testable import Keys

@Suite("Rotation rules")
struct KeyRotationRuleTests {
    struct Case: CustomTestStringConvertible, Sendable {
        let name: String
        let current: IPsecKey
        let new: IPsecKey
        let outcome: Result<Bool, KeyRotationError>  // success: isSuccessor
        var testDescription: String { name }
    }

    static let gcm128 = KeyAlgorithm.aesGCM(keyBits: 128, icvBits: 128)

    static let cases: [Case] = [
        .init(name: "3 → 4", current: KeyFixtures.aeadKey(id: 3), new: KeyFixtures.aeadKey(id: 4, start: 9), outcome: .success(true)),
        .init(name: "15 → 1 wraps", current: KeyFixtures.aeadKey(id: 15), new: KeyFixtures.aeadKey(id: 1, start: 9), outcome: .success(true)),
        .init(name: "3 → 5 skips", current: KeyFixtures.aeadKey(id: 3), new: KeyFixtures.aeadKey(id: 5, start: 9), outcome: .success(false)),
        .init(name: "3 → 10 skips 6, the farthest allowed", current: KeyFixtures.aeadKey(id: 3), new: KeyFixtures.aeadKey(id: 10, start: 9), outcome: .success(false)),
        .init(name: "12 → 4 wraps, 7 steps", current: KeyFixtures.aeadKey(id: 12), new: KeyFixtures.aeadKey(id: 4, start: 9), outcome: .success(false)),
        .init(name: "1 → 15 goes backwards", current: KeyFixtures.aeadKey(id: 1), new: KeyFixtures.aeadKey(id: 15, start: 9),
              outcome: .failure(.keyIDOrder(current: KeyID(1)!, new: KeyID(15)!))),
        .init(name: "3 → 12 is 9 steps", current: KeyFixtures.aeadKey(id: 3), new: KeyFixtures.aeadKey(id: 12, start: 9),
              outcome: .failure(.keyIDOrder(current: KeyID(3)!, new: KeyID(12)!))),
        .init(name: "5 → 4 goes back", current: KeyFixtures.aeadKey(id: 5), new: KeyFixtures.aeadKey(id: 4, start: 9),
              outcome: .failure(.keyIDOrder(current: KeyID(5)!, new: KeyID(4)!))),
        .init(name: "1 → 9 is 8 steps", current: KeyFixtures.aeadKey(id: 1), new: KeyFixtures.aeadKey(id: 9, start: 9),
              outcome: .failure(.keyIDOrder(current: KeyID(1)!, new: KeyID(9)!))),
        .init(name: "cbc 2 → 3", current: KeyFixtures.cbcKey(id: 2), new: KeyFixtures.cbcKey(id: 3, start: 1), outcome: .success(true)),
        .init(name: "same SPI", current: KeyFixtures.aeadKey(id: 3), new: KeyFixtures.aeadKey(id: 3, start: 9), outcome: .failure(.sameKeyID(KeyID(3)!))),
        .init(name: "same SPI and bytes", current: KeyFixtures.aeadKey(id: 3), new: KeyFixtures.aeadKey(id: 3), outcome: .failure(.sameKeyID(KeyID(3)!))),
        .init(name: "AES 128 → 256", current: KeyFixtures.aeadKey(id: 3), new: KeyFixtures.aeadKey(id: 4, keyBits: 256),
              outcome: .failure(.keyLengthChanged(from: gcm128, to: .aesGCM(keyBits: 256, icvBits: 128)))),
        .init(name: "ICV 128 → 96", current: KeyFixtures.aeadKey(id: 3), new: KeyFixtures.aeadKey(id: 4, icv: 96),
              outcome: .failure(.algorithmChanged(from: gcm128, to: .aesGCM(keyBits: 128, icvBits: 96)))),
        .init(name: "AEAD → cbc-hmac", current: KeyFixtures.aeadKey(id: 3), new: KeyFixtures.cbcKey(id: 4),
              outcome: .failure(.algorithmChanged(from: gcm128, to: KeyFixtures.cbcKey(id: 4).algorithm))),
        .init(name: "sha256 → sha512", current: KeyFixtures.cbcKey(id: 3), new: KeyFixtures.cbcKey(id: 4, hash: "sha512", authBytes: 64),
              outcome: .failure(.algorithmChanged(from: KeyFixtures.cbcKey(id: 3).algorithm, to: KeyFixtures.cbcKey(id: 4, hash: "sha512", authBytes: 64).algorithm))),
        .init(name: "cbc AES 128 → 192", current: KeyFixtures.cbcKey(id: 3), new: KeyFixtures.cbcKey(id: 4, aesKeyBits: 192),
              outcome: .failure(.keyLengthChanged(from: KeyFixtures.cbcKey(id: 3).algorithm, to: KeyFixtures.cbcKey(id: 4, aesKeyBits: 192).algorithm))),
    ]

    @Test("rotation", arguments: cases)
    func rotation(_ c: Case) {
        switch c.outcome {
        case .success(let isSuccessor):
            let rotation = try? KeyRotationRule.check(new: c.new, current: c.current)
            #expect(rotation == KeyRotation(from: c.current.id, to: c.new.id))
            #expect(rotation?.isSuccessor == isSuccessor)
        case .failure(let error):
            #expect(throws: error) { try KeyRotationRule.check(new: c.new, current: c.current) }
            #expect(!KeyFixtures.leaks(error.description, KeyFixtures.hex(c.new.encryptionKey.revealed)))
        }
    }

    @Test func successorOfEveryID() throws {
        for raw in 1...15 {
            let current = KeyFixtures.aeadKey(id: raw)
            let next = KeyFixtures.aeadKey(id: raw == 15 ? 1 : raw + 1)
            #expect(try KeyRotationRule.check(new: next, current: current).isSuccessor)
        }
    }

    /// Exactly the IDs 1–7 steps ahead (with wrap) are accepted, from every current ID; the message names both
    /// IDs and the allowed range.
    @Test func orderWindowFromEveryID() throws {
        for raw in 1...15 {
            let current = KeyFixtures.aeadKey(id: raw)
            for target in 1...15 where target != raw {
                let steps = (target - raw + 15) % 15
                let new = KeyFixtures.aeadKey(id: target, start: 9)
                if steps <= 7 {
                    #expect(throws: Never.self) { try KeyRotationRule.check(new: new, current: current) }
                } else {
                    #expect(throws: KeyRotationError.keyIDOrder(current: current.id, new: new.id)) {
                        try KeyRotationRule.check(new: new, current: current)
                    }
                }
            }
        }
        let error = KeyRotationError.keyIDOrder(current: KeyID(3)!, new: KeyID(12)!)
        #expect(error.description.contains("new key ID 12 is 9 steps after the current key ID 3"))
        #expect(error.description.contains("(4–10)"))
        #expect(KeyRotationError.keyIDOrder(current: KeyID(12)!, new: KeyID(10)!).description.contains("(13–15 or 1–4)"))
        #expect(error.reason == "key_id_order")
    }
}
