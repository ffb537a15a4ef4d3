import CLibcrypto
import IPsecPrimitives

extension IPsecKey {
    /// Domain-separation label of the fingerprint (version 1).
    static let fingerprintLabel = Array("ipsec-agent key fingerprint v1".utf8)

    /// A one-way identifier of the key material, 32 lowercase hex digits.
    ///
    /// The first 16 bytes of SHA-256 over
    /// `label ‖ 0x00 ‖ id ‖ len32(algorithm.identifier) ‖ len32(encryptionKey) ‖ len32(authenticationKey or empty)`
    /// where `len32(x)` is x's byte count as 4 bytes big-endian followed by x. Peers compare
    /// fingerprints to detect two nodes holding different keys under one key ID; the bytes cannot be
    /// recovered from it.
    public var fingerprint: String {
        // libcrypto's SHA-256 on a plain context, as `KeyDerivation` (swift-crypto's `SHA256` sets up an OpenSSL
        // digest context per hash).
        var context = SHA256_CTX()
        SHA256_Init(&context)
        func update(_ bytes: [UInt8]) { _ = SHA256_Update(&context, bytes, bytes.count) }
        update(Self.fingerprintLabel + [0x00, id.rawValue])
        update(ByteEncoding.lengthPrefixed(Array(algorithm.identifier.utf8)))
        update(ByteEncoding.lengthPrefixed(encryptionKey.revealed))
        update(ByteEncoding.lengthPrefixed(authenticationKey?.revealed ?? []))
        var digest = [UInt8](repeating: 0, count: Int(SHA256_DIGEST_LENGTH))
        SHA256_Final(&digest, &context)
        return ByteEncoding.hex(digest.prefix(16))
    }
}
