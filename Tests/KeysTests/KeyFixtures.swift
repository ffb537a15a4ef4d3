import IPsecPrimitives
@testable import Keys

/// Deterministic key material and key lines for tests.
enum KeyFixtures {
    /// `count` bytes counting up from `start` (wrapping).
    static func bytes(_ count: Int, from start: UInt8 = 0) -> [UInt8] {
        (0..<count).map { UInt8(truncatingIfNeeded: Int(start) + $0) }
    }

    static func hex(_ bytes: [UInt8]) -> String {
        bytes.map { String($0, radix: 16).count == 1 ? "0" + String($0, radix: 16) : String($0, radix: 16) }.joined()
    }

    /// A valid AEAD line: `SPI rfc4106(gcm(aes)) <keyBytes of pattern> ICV`.
    static func aeadLine(spi: Int, keyBytes: Int = 20, icv: Int = 128, start: UInt8 = 0) -> String {
        "\(spi) rfc4106(gcm(aes)) \(hex(bytes(keyBytes, from: start))) \(icv)"
    }

    /// A valid cbc-hmac line.
    static func cbcLine(spi: Int, hash: String = "sha256", authBytes: Int = 32, keyBytes: Int = 16, start: UInt8 = 0x40) -> String {
        "\(spi) hmac(\(hash)) \(hex(bytes(authBytes, from: start))) cbc(aes) \(hex(bytes(keyBytes, from: start &+ 0x80)))"
    }

    static func aeadKey(id: Int, keyBits: Int = 128, icv: Int = 128, start: UInt8 = 0) -> IPsecKey {
        IPsecKey(id: KeyID(id)!, algorithm: .aesGCM(keyBits: keyBits, icvBits: icv), encryptionKey: SecretBytes(bytes(keyBits / 8 + 4, from: start)))
    }

    static func cbcKey(id: Int, hash: String = "sha256", authBytes: Int = 32, aesKeyBits: Int = 128, start: UInt8 = 0x40) -> IPsecKey {
        IPsecKey(
            id: KeyID(id)!, algorithm: .cbcHMAC(hash: hash, authKeyBytes: authBytes, aesKeyBits: aesKeyBits),
            encryptionKey: SecretBytes(bytes(aesKeyBits / 8, from: start &+ 0x80)), authenticationKey: SecretBytes(bytes(authBytes, from: start))
        )
    }

    /// True when `text` contains any 8-character run of `keyHex` (the secret leaked into a message).
    static func leaks(_ text: String, _ keyHex: String) -> Bool {
        let lowered = text.lowercased()
        let key = Array(keyHex.lowercased())
        guard key.count >= 8 else { return false }
        for start in 0...(key.count - 8) where lowered.contains(String(key[start..<(start + 8)])) {
            return true
        }
        return false
    }
}
