import Crypto
import IPsecPrimitives

/// Makes new random keys from the system CSPRNG (swift-crypto `SymmetricKey`).
public enum KeyGenerator {
    /// The algorithm families `key generate` offers.
    public enum Family: String, Sendable, CaseIterable {
        /// `rfc4106(gcm(aes))`, ICV 128.
        case aead
        /// `hmac(sha256)` + `cbc(aes)`.
        case cbcHMAC = "cbc-hmac"
    }

    /// AES key sizes in bits.
    public static let aesKeyBits = [128, 192, 256]

    /// The algorithm `generate` uses for a family and AES key size (which must be 128, 192 or 256).
    public static func algorithm(_ family: Family, aesKeyBits: Int) -> KeyAlgorithm {
        precondition(Self.aesKeyBits.contains(aesKeyBits), "AES key bits must be 128, 192 or 256")
        return switch family {
        case .aead: .aesGCM(keyBits: aesKeyBits, icvBits: 128)
        case .cbcHMAC: .cbcHMAC(hash: "sha256", authKeyBytes: 32, aesKeyBits: aesKeyBits)
        }
    }

    /// A new random key of `algorithm` under `id`.
    public static func generate(id: KeyID, algorithm: KeyAlgorithm) -> IPsecKey {
        switch algorithm {
        case .aesGCM(let keyBits, _):
            IPsecKey(id: id, algorithm: algorithm, encryptionKey: random(bytes: keyBits / 8 + 4))
        case .cbcHMAC(_, let authKeyBytes, let aesKeyBits):
            IPsecKey(
                id: id, algorithm: algorithm,
                encryptionKey: random(bytes: aesKeyBits / 8), authenticationKey: random(bytes: authKeyBytes)
            )
        }
    }

    static func random(bytes: Int) -> SecretBytes {
        SymmetricKey(size: SymmetricKeySize(bitCount: bytes * 8)).withUnsafeBytes { SecretBytes($0) }
    }
}
