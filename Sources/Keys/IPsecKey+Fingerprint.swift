import Crypto

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
        var hasher = SHA256()
        hasher.update(data: Self.fingerprintLabel + [0x00, id.rawValue])
        hasher.update(data: ByteEncoding.lengthPrefixed(Array(algorithm.identifier.utf8)))
        hasher.update(data: ByteEncoding.lengthPrefixed(encryptionKey.revealed))
        hasher.update(data: ByteEncoding.lengthPrefixed(authenticationKey?.revealed ?? []))
        return ByteEncoding.hex(hasher.finalize().prefix(16))
    }
}
