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
        // HKDF = Expand(Extract(salt, IKM), info). Extract depends on the key alone, so it runs once per key, and
        // so does the HMAC key schedule of Expand (a prepared HMAC is copied per pair): a rotation derives two pair
        // keys per peer.
        let prepared = expanders(for: key)
        func derive(_ expander: HMAC<SHA256>, _ count: Int, _ purpose: Purpose) -> SecretBytes {
            let info = self.info(
                purpose: purpose, key: key, source: source, destination: destination,
                sourceBootID: sourceBootID, destinationBootID: destinationBootID
            )
            return SecretBytes(expand(expander, info: info, count: count))
        }
        return PairKey(
            algorithm: key.algorithm,
            encryptionKey: derive(prepared.encryption, key.encryptionKey.count, .encryption),
            authenticationKey: key.authenticationKey.map { derive(prepared.authentication!, $0.count, .authentication) }
        )
    }

    /// RFC 5869 Expand with an HMAC already keyed with the PRK: T(i) = HMAC(PRK, T(i-1) ‖ info ‖ i).
    static func expand(_ keyed: HMAC<SHA256>, info: [UInt8], count: Int) -> [UInt8] {
        precondition(count <= 255 * SHA256.byteCount)
        var output: [UInt8] = []
        output.reserveCapacity(count + SHA256.byteCount)
        var previous: [UInt8] = []
        var counter: UInt8 = 1
        while output.count < count {
            var mac = keyed
            mac.update(data: previous)
            mac.update(data: info)
            mac.update(data: [counter])
            previous = Array(mac.finalize())
            output += previous
            counter += 1
        }
        return Array(output.prefix(count))
    }

    private struct Prepared {
        var key: IPsecKey
        var encryption: HMAC<SHA256>
        var authentication: HMAC<SHA256>?
    }

    /// Extract and the Expand key schedule of the last few keys' components (a rotation holds two keys).
    private static let prepared = Mutex<[Prepared]>([])

    private static func expanders(for key: IPsecKey) -> (encryption: HMAC<SHA256>, authentication: HMAC<SHA256>?) {
        if let hit = prepared.withLock({ $0.first { $0.key == key } }) { return (hit.encryption, hit.authentication) }
        func extract(_ component: SecretBytes) -> HMAC<SHA256> {
            let prk = component.withUnsafeBytes { ikm in
                HKDF<SHA256>.extract(inputKeyMaterial: SymmetricKey(data: ikm), salt: salt)
            }
            return prk.withUnsafeBytes { HMAC<SHA256>(key: SymmetricKey(data: $0)) }
        }
        let entry = Prepared(key: key, encryption: extract(key.encryptionKey), authentication: key.authenticationKey.map(extract))
        prepared.withLock { entries in
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
        func appendLength32(_ count: Int) {
            info += [UInt8(truncatingIfNeeded: count >> 24), UInt8(truncatingIfNeeded: count >> 16),
                     UInt8(truncatingIfNeeded: count >> 8), UInt8(truncatingIfNeeded: count)]
        }
        info.append(purpose.rawValue)
        info.append(key.id.rawValue)
        let identifier = key.algorithm.identifier.utf8
        appendLength32(identifier.count)
        info += identifier
        for address in [source, destination] {
            switch address {
            case .v4(let v):
                info.append(4)
                withUnsafeBytes(of: v.bigEndian) { info += $0 }
            case .v6(let v):
                info.append(16)
                withUnsafeBytes(of: v.bigEndian) { info += $0 }
            }
        }
        appendLength32(sourceBootID.utf8.count)
        info += sourceBootID.utf8
        appendLength32(destinationBootID.utf8.count)
        info += destinationBootID.utf8
        return info
    }
}
