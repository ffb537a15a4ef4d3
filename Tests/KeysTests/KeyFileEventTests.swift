import Testing
@testable import Keys

@Suite("Key file event")
struct KeyFileEventTests {
    @Test func resultAndDescription() throws {
        let key = KeyFixtures.aeadKey(id: 4)
        let error = KeyFileError(file: "f", line: 2, field: .icv, expected: "ICV bits 64, 96 or 128", got: "\"7\"")
        #expect(try KeyFileEvent.key(key).result.get() == key)
        #expect(throws: error) { try KeyFileEvent.error(error).result.get() }
        #expect(KeyFileEvent.key(key).description == "key 4 rfc4106(gcm(aes)) 128-bit icv 128 (fingerprint \(key.fingerprint))")
        #expect(KeyFileEvent.error(error).description == "f:2: icv: expected ICV bits 64, 96 or 128, got \"7\"")
    }
}
