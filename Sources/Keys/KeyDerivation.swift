import Crypto
import IPsecPrimitives
import Synchronization

/// Derives the key of one directional SA (source node → destination node) from the node-wide key.
///
/// HKDF-SHA256 (RFC 5869), once per key component, with
/// - salt: the ASCII bytes of `ipsec-agent pair key v1`;
/// - IKM: the component's bytes (AEAD key ‖ salt, or the CBC key, or the HMAC key);
/// - info: `purpose ‖ key ID ‖ len32(algorithm.identifier) ‖ len8(source) ‖ len8(destination)
///   ‖ len32(source boot ID) ‖ len32(destination boot ID)`, where purpose is 0x01 for the
///   encryption key and 0x02 for the authentication key, addresses are network-order bytes
///   preceded by their count (4 or 16) as one byte, and `len32` is a 4-byte big-endian count
///   followed by the UTF-8 bytes;
/// - output length: the component's length, so the pair key has the shape of the input key.
///
/// Swapping source and destination, or a reboot of either node (new boot ID), gives a different key.
/// docs/key-file.md has the construction with test vectors.
public enum KeyDerivation {
    /// HKDF salt (version 1).
    public static let salt = Array("ipsec-agent pair key v1".utf8)

    enum Purpose: UInt8 {
        case encryption = 0x01
        case authentication = 0x02
    }

    public static func pairKey(
        for key: IPsecKey,
        source: IPAddress,
        destination: IPAddress,
        sourceBootID: String,
        destinationBootID: String
    ) -> PairKey {
        // HKDF = Expand(Extract(salt, IKM), info). Extract depends on the key alone, so it runs once per key (a
        // rotation derives two pair keys per peer: half the HMACs of running both steps every time).
        let prks = pseudoRandomKeys(for: key)
        func derive(_ prk: SymmetricKey, _ count: Int, _ purpose: Purpose) -> SecretBytes {
            let info = self.info(
                purpose: purpose, key: key, source: source, destination: destination,
                sourceBootID: sourceBootID, destinationBootID: destinationBootID
            )
            let derived = HKDF<SHA256>.expand(pseudoRandomKey: prk, info: info, outputByteCount: count)
            return derived.withUnsafeBytes { SecretBytes($0) }
        }
        return PairKey(
            algorithm: key.algorithm,
            encryptionKey: derive(prks.encryption, key.encryptionKey.count, .encryption),
            authenticationKey: key.authenticationKey.map { derive(prks.authentication!, $0.count, .authentication) }
        )
    }

    private struct Extracted {
        var key: IPsecKey
        var encryption: SymmetricKey
        var authentication: SymmetricKey?
    }

    /// HKDF-Extract of the last few keys' components (a rotation holds two keys).
    private static let extracted = Mutex<[Extracted]>([])

    private static func pseudoRandomKeys(for key: IPsecKey) -> (encryption: SymmetricKey, authentication: SymmetricKey?) {
        if let hit = extracted.withLock({ $0.first { $0.key == key } }) { return (hit.encryption, hit.authentication) }
        func extract(_ component: SecretBytes) -> SymmetricKey {
            let prk = component.withUnsafeBytes { ikm in
                HKDF<SHA256>.extract(inputKeyMaterial: SymmetricKey(data: ikm), salt: salt)
            }
            return prk.withUnsafeBytes { SymmetricKey(data: $0) }
        }
        let entry = Extracted(key: key, encryption: extract(key.encryptionKey), authentication: key.authenticationKey.map(extract))
        extracted.withLock { entries in
            entries.append(entry)
            if entries.count > 4 { entries.removeFirst() }
        }
        return (entry.encryption, entry.authentication)
    }

    /// The HKDF info bytes, laid out as documented on the type.
    static func info(
        purpose: Purpose, key: IPsecKey, source: IPAddress, destination: IPAddress,
        sourceBootID: String, destinationBootID: String
    ) -> [UInt8] {
        var info: [UInt8] = []
        info.reserveCapacity(64 + sourceBootID.utf8.count + destinationBootID.utf8.count)
        info += [purpose.rawValue, key.id.rawValue]
        info += ByteEncoding.lengthPrefixed(Array(key.algorithm.identifier.utf8))
        info.append(UInt8(source.bytes.count))
        info += source.bytes
        info.append(UInt8(destination.bytes.count))
        info += destination.bytes
        info += ByteEncoding.lengthPrefixed(Array(sourceBootID.utf8))
        info += ByteEncoding.lengthPrefixed(Array(destinationBootID.utf8))
        return info
    }
}
