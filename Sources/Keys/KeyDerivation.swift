import CLibcrypto
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
        func derive(_ expander: PreparedHMAC, _ count: Int, _ purpose: Purpose) -> SecretBytes {
            withInfo(
                purpose: purpose, key: key, identifier: prepared.identifier, source: source,
                destination: destination, sourceBootID: sourceBootID, destinationBootID: destinationBootID
            ) {
                SecretBytes(expand(expander, info: $0, count: count))
            }
        }
        return PairKey(
            algorithm: key.algorithm,
            encryptionKey: derive(prepared.encryption, key.encryptionKey.count, .encryption),
            authenticationKey: key.authenticationKey.map { derive(prepared.authentication!, $0.count, .authentication) }
        )
    }

    /// HMAC-SHA256 keyed with a PRK, as the two SHA-256 states after the padded key block (RFC 2104): a MAC is
    /// `outer ‖ H(inner ‖ message)`. Built once per key; each MAC copies both states, so the per-pair work is the
    /// hashing itself. The states are libcrypto's `SHA256_CTX`, a plain struct copied by value: swift-crypto's
    /// `SHA256` keeps its context in a class, and the allocations, copies and exclusivity checks of four contexts
    /// per MAC cost several times the hashing (profiled: ~15% of a rotation's agent work).
    struct PreparedHMAC: @unchecked Sendable {  // two plain C structs, never mutated after init
        private let inner: SHA256_CTX
        private let outer: SHA256_CTX

        init(key: UnsafeRawBufferPointer) {
            precondition(key.count <= Int(SHA256_CBLOCK))
            var padded = [UInt8](repeating: 0, count: Int(SHA256_CBLOCK))
            for (i, byte) in key.enumerated() { padded[i] = byte }
            var inner = SHA256_CTX(), outer = SHA256_CTX()
            SHA256_Init(&inner)
            SHA256_Init(&outer)
            var block = padded.map { $0 ^ 0x36 }
            SHA256_Update(&inner, block, block.count)
            block = padded.map { $0 ^ 0x5C }
            SHA256_Update(&outer, block, block.count)
            for i in block.indices { block[i] = 0; padded[i] = 0 }
            self.inner = inner
            self.outer = outer
        }

        /// A MAC's 32 bytes.
        typealias Code = SIMD32<UInt8>

        /// HMAC(PRK, a ‖ b ‖ c). Three parts, not variadic: a variadic call allocates its array.
        func authenticationCode(
            _ a: UnsafeRawBufferPointer, _ b: UnsafeRawBufferPointer,
            _ c: UnsafeRawBufferPointer = UnsafeRawBufferPointer(start: nil, count: 0)
        ) -> Code {
            var inner = self.inner
            SHA256_Update(&inner, a.baseAddress, a.count)
            SHA256_Update(&inner, b.baseAddress, b.count)
            SHA256_Update(&inner, c.baseAddress, c.count)
            var code = Code()
            var outer = self.outer
            withUnsafeMutableBytes(of: &code) { bytes in
                let digest = bytes.baseAddress!.assumingMemoryBound(to: UInt8.self)
                SHA256_Final(digest, &inner)
                SHA256_Update(&outer, digest, Int(SHA256_DIGEST_LENGTH))
                SHA256_Final(digest, &outer)
            }
            return code
        }
    }

    /// RFC 5869 Expand with an HMAC already keyed with the PRK: T(i) = HMAC(PRK, T(i-1) ‖ info ‖ i), written
    /// straight into the output (one allocation).
    static func expand(_ keyed: PreparedHMAC, info: UnsafeRawBufferPointer, count: Int) -> [UInt8] {
        let hashLength = Int(SHA256_DIGEST_LENGTH)
        precondition(count <= 255 * hashLength)
        return [UInt8](unsafeUninitializedCapacity: count) { output, initialized in
            var counter: UInt8 = 1
            while initialized < count {
                // T(i-1) is the output's last block (empty for T(1)).
                let previous = UnsafeRawBufferPointer(
                    rebasing: UnsafeRawBufferPointer(output)[
                        max(0, initialized - hashLength)..<initialized])
                let block = withUnsafeBytes(of: counter) { keyed.authenticationCode(previous, info, $0) }
                let n = min(hashLength, count - initialized)
                withUnsafeBytes(of: block) { bytes in
                    UnsafeMutableRawBufferPointer(output).baseAddress!.advanced(by: initialized)
                        .copyMemory(from: bytes.baseAddress!, byteCount: n)
                }
                initialized += n
                counter += 1
            }
        }
    }

    /// Shared, not copied, per derivation: two prepared HMACs are ~450 bytes.
    private final class Prepared: Sendable {
        let key: IPsecKey
        let identifier: [UInt8]
        let encryption: PreparedHMAC
        let authentication: PreparedHMAC?

        init(key: IPsecKey, identifier: [UInt8], encryption: PreparedHMAC, authentication: PreparedHMAC?) {
            self.key = key
            self.identifier = identifier
            self.encryption = encryption
            self.authentication = authentication
        }
    }

    /// Extract and the Expand key schedule of the last few keys' components (a rotation holds two keys).
    private static let prepared = Mutex<[Prepared]>([])

    private static func expanders(for key: IPsecKey) -> Prepared {
        if let hit = prepared.withLock({ $0.first { $0.key == key } }) { return hit }
        // Extract is HMAC(salt, IKM), on the same libcrypto HMAC as Expand: swift-crypto's HKDF set up OpenSSL's
        // digest contexts for it: a rotation's first peer took 0.75 ms in the VM with it, 0.35 without (docs/benchmarks.md).
        let keyedWithSalt = salt.withUnsafeBytes { PreparedHMAC(key: $0) }
        func extract(_ component: SecretBytes) -> PreparedHMAC {
            var prk = component.withUnsafeBytes {
                keyedWithSalt.authenticationCode($0, UnsafeRawBufferPointer(start: nil, count: 0))
            }
            defer { prk = PreparedHMAC.Code() }
            return withUnsafeBytes(of: prk) { PreparedHMAC(key: $0) }
        }
        let entry = Prepared(
            key: key, identifier: Array(key.algorithm.identifier.utf8), encryption: extract(key.encryptionKey),
            authentication: key.authenticationKey.map(extract))
        prepared.withLock { entries in
            entries.append(entry)
            if entries.count > 4 { entries.removeFirst() }
        }
        return entry
    }

    /// The HKDF info bytes, laid out as documented on the type.
    static func info(
        purpose: Purpose, key: IPsecKey, source: IPAddress, destination: IPAddress,
        sourceBootID: String, destinationBootID: String
    ) -> [UInt8] {
        withInfo(
            purpose: purpose, key: key, identifier: Array(key.algorithm.identifier.utf8), source: source,
            destination: destination, sourceBootID: sourceBootID, destinationBootID: destinationBootID
        ) { Array($0) }
    }

    /// `info`'s bytes in a temporary buffer, with the algorithm identifier's bytes at hand (computed once per key).
    static func withInfo<R>(
        purpose: Purpose, key: IPsecKey, identifier: [UInt8], source: IPAddress, destination: IPAddress,
        sourceBootID: String, destinationBootID: String, _ body: (UnsafeRawBufferPointer) -> R
    ) -> R {
        let capacity = 2 + 4 + identifier.count + 2 * 17 + 8 + sourceBootID.utf8.count + destinationBootID.utf8.count
        return withUnsafeTemporaryAllocation(byteCount: capacity, alignment: 1) { buffer in
            var info = InfoWriter(buffer: buffer)
            info.append(purpose.rawValue)
            info.append(key.id.rawValue)
            info.appendLength32(identifier.count)
            identifier.withUnsafeBytes { info.append($0) }
            info.append(source)
            info.append(destination)
            info.append(sourceBootID)
            info.append(destinationBootID)
            return body(UnsafeRawBufferPointer(rebasing: buffer[..<info.count]))
        }
    }

    /// Appends the info fields to a buffer sized for them. A struct with mutating methods, not local functions
    /// capturing a counter: captured variables are boxed and checked for exclusive access at run time, which cost
    /// more than the hashing in a rotation (profiled).
    private struct InfoWriter {
        let buffer: UnsafeMutableRawBufferPointer
        private(set) var count = 0

        init(buffer: UnsafeMutableRawBufferPointer) { self.buffer = buffer }

        mutating func append(_ byte: UInt8) {
            buffer[count] = byte
            count += 1
        }

        mutating func append(_ bytes: UnsafeRawBufferPointer) {
            UnsafeMutableRawBufferPointer(rebasing: buffer[count..<count + bytes.count]).copyMemory(from: bytes)
            count += bytes.count
        }

        mutating func appendLength32(_ length: Int) {
            withUnsafeBytes(of: UInt32(truncatingIfNeeded: length).bigEndian) { append($0) }
        }

        mutating func append(_ string: String) {
            appendLength32(string.utf8.count)
            var string = string
            string.withUTF8 { append(UnsafeRawBufferPointer($0)) }
        }

        mutating func append(_ address: IPAddress) {
            switch address {
            case .v4(let v):
                append(4)
                withUnsafeBytes(of: v.bigEndian) { append($0) }
            case .v6(let v):
                append(16)
                withUnsafeBytes(of: v.bigEndian) { append($0) }
            }
        }
    }
}
