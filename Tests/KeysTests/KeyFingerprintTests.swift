import IPsecPrimitives
import Testing
@testable import Keys

@Suite("Key fingerprint")
struct KeyFingerprintTests {
    // Computed once with Python's hashlib from the construction in docs/key-file.md.
    @Test func vectors() {
        #expect(KeyFixtures.aeadKey(id: 3).fingerprint == "08c2b65f8a6e75e5dbc8b501086c1059")
        #expect(KeyFixtures.cbcKey(id: 7).fingerprint == "8a058cc2d9058605154732b9b97742a9")
    }

    @Test func distinguishesIDBytesAndAlgorithm() {
        let base = KeyFixtures.aeadKey(id: 3)
        #expect(base.fingerprint == KeyFixtures.aeadKey(id: 3).fingerprint)
        let others = [
            KeyFixtures.aeadKey(id: 4),
            KeyFixtures.aeadKey(id: 3, start: 1),
            KeyFixtures.aeadKey(id: 3, icv: 96),
            IPsecKey(id: base.id, algorithm: .cbcHMAC(hash: "sha1", authKeyBytes: 0, aesKeyBits: 160), encryptionKey: base.encryptionKey, authenticationKey: SecretBytes([])),
        ]
        for other in others {
            #expect(other.fingerprint != base.fingerprint)
        }
        #expect(base.fingerprint.count == 32)
        #expect(base.fingerprint.allSatisfy { $0.isHexDigit && !$0.isUppercase })
    }

    @Test func doesNotContainKeyBytes() {
        let key = KeyGenerator.generate(id: KeyID(1)!, algorithm: .aesGCM(keyBits: 256, icvBits: 128))
        #expect(!KeyFixtures.leaks(key.fingerprint, KeyFixtures.hex(key.encryptionKey.revealed)))
    }
}
