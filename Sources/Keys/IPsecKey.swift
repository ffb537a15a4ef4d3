import IPsecPrimitives

/// The algorithm family of a key line, with the sizes that fix the ESP overhead (and so the MTU).
public enum KeyAlgorithm: Hashable, Sendable, CustomStringConvertible {
    /// `rfc4106(gcm(aes))`: AES key of `keyBits` (128/192/256) plus a 4-byte salt; ICV `icvBits` (64/96/128).
    case aesGCM(keyBits: Int, icvBits: Int)
    /// `hmac(<hash>)` authentication + `cbc(aes)` encryption.
    case cbcHMAC(hash: String, authKeyBytes: Int, aesKeyBits: Int)

    public var description: String {
        switch self {
        case .aesGCM(let k, let icv): "rfc4106(gcm(aes)) \(k)-bit icv \(icv)"
        case .cbcHMAC(let h, let a, let k): "hmac(\(h)) \(a * 8)-bit + cbc(aes) \(k)-bit"
        }
    }
}

/// A validated key from the key file. The key bytes are `SecretBytes`: never printed.
public struct IPsecKey: Hashable, Sendable, CustomStringConvertible {
    public let id: KeyID
    public let algorithm: KeyAlgorithm
    /// AEAD: key ‖ salt. cbc-hmac: the encryption key.
    public let encryptionKey: SecretBytes
    /// cbc-hmac only: the authentication key.
    public let authenticationKey: SecretBytes?

    public init(id: KeyID, algorithm: KeyAlgorithm, encryptionKey: SecretBytes, authenticationKey: SecretBytes? = nil) {
        self.id = id
        self.algorithm = algorithm
        self.encryptionKey = encryptionKey
        self.authenticationKey = authenticationKey
    }

    public var description: String { "key \(id) \(algorithm)" }
}

/// The key of one directional SA (source node → destination node), derived from an `IPsecKey`.
public struct PairKey: Hashable, Sendable, CustomStringConvertible {
    public let algorithm: KeyAlgorithm
    public let encryptionKey: SecretBytes
    public let authenticationKey: SecretBytes?
    public init(algorithm: KeyAlgorithm, encryptionKey: SecretBytes, authenticationKey: SecretBytes?) {
        self.algorithm = algorithm
        self.encryptionKey = encryptionKey
        self.authenticationKey = authenticationKey
    }
    public var description: String { "pair key \(algorithm)" }
}
