import Crypto
import Foundation
import IPsecPrimitives
import Testing
import TestSupport
@testable import Keys

@Suite("Per-pair key derivation (HKDF-SHA256)")
struct KeyDerivationTests {
    static let bootA = "0b6e1f9c-1111-4c4c-8a8a-000000000001"
    static let bootB = "0b6e1f9c-1111-4c4c-8a8a-000000000002"
    static let v4a = IPAddress("10.0.0.1")!
    static let v4b = IPAddress("10.0.0.2")!
    static let v6a = IPAddress("fd00::1")!
    static let v6b = IPAddress("fd00::2")!

    // Vectors computed once with Python's `cryptography` HKDF from the construction in docs/key-file.md.
    @Test func aeadVectors() {
        let key = KeyFixtures.aeadKey(id: 3)
        let forward = KeyDerivation.pairKey(for: key, source: Self.v4a, destination: Self.v4b, sourceBootID: Self.bootA, destinationBootID: Self.bootB)
        let backward = KeyDerivation.pairKey(for: key, source: Self.v4b, destination: Self.v4a, sourceBootID: Self.bootB, destinationBootID: Self.bootA)
        #expect(KeyFixtures.hex(forward.encryptionKey.revealed) == "2873b9d27a5f6194c5a6ac29d0836a87cf6ae704")
        #expect(KeyFixtures.hex(backward.encryptionKey.revealed) == "d0a50debca61032a1680238167082fbcdd29d37f")
        #expect(forward.authenticationKey == nil)
        #expect(forward.algorithm == key.algorithm)
    }

    @Test func cbcHMACVectors() {
        let key = KeyFixtures.cbcKey(id: 7)
        let pair = KeyDerivation.pairKey(for: key, source: Self.v6a, destination: Self.v6b, sourceBootID: Self.bootA, destinationBootID: Self.bootB)
        #expect(KeyFixtures.hex(pair.encryptionKey.revealed) == "b5889bc665f3bc479ea266143661baa7")
        #expect(KeyFixtures.hex(pair.authenticationKey?.revealed ?? []) == "bea08db979f399525176a49107b4dd05abb75d8a37aed893fcf34fd1c299e77c")
    }

    @Test func infoLayout() {
        let info = KeyDerivation.info(
            purpose: .authentication, key: KeyFixtures.cbcKey(id: 7), source: Self.v4a, destination: Self.v6b,
            sourceBootID: "a", destinationBootID: "bc"
        )
        let algorithm = Array("hmac(sha256) cbc(aes)".utf8)
        let expected: [UInt8] = [0x02, 7, 0, 0, 0, UInt8(algorithm.count)] + algorithm
            + [4, 10, 0, 0, 1] + [16] + Self.v6b.bytes
            + [0, 0, 0, 1, UInt8(ascii: "a")] + [0, 0, 0, 2, UInt8(ascii: "b"), UInt8(ascii: "c")]
        #expect(info == expected)
    }

    @Test("output has the input's shape", arguments: [
        KeyFixtures.aeadKey(id: 1, keyBits: 128), KeyFixtures.aeadKey(id: 2, keyBits: 192), KeyFixtures.aeadKey(id: 3, keyBits: 256),
        KeyFixtures.cbcKey(id: 4, hash: "sha1", authBytes: 20, aesKeyBits: 192), KeyFixtures.cbcKey(id: 5, hash: "sha512", authBytes: 64, aesKeyBits: 256),
    ])
    func lengths(_ key: IPsecKey) {
        let pair = KeyDerivation.pairKey(for: key, source: Self.v4a, destination: Self.v4b, sourceBootID: Self.bootA, destinationBootID: Self.bootB)
        #expect(pair.encryptionKey.count == key.encryptionKey.count)
        #expect(pair.authenticationKey?.count == key.authenticationKey?.count)
        #expect(pair.encryptionKey != key.encryptionKey)
    }

    @Test func boundToDirectionBootIDsAndKeyID() {
        let key = KeyFixtures.aeadKey(id: 3)
        func derive(_ key: IPsecKey, _ s: IPAddress, _ d: IPAddress, _ sb: String, _ db: String) -> SecretBytes {
            KeyDerivation.pairKey(for: key, source: s, destination: d, sourceBootID: sb, destinationBootID: db).encryptionKey
        }
        let base = derive(key, Self.v4a, Self.v4b, Self.bootA, Self.bootB)
        #expect(base == derive(key, Self.v4a, Self.v4b, Self.bootA, Self.bootB))
        let variants = [
            derive(key, Self.v4b, Self.v4a, Self.bootA, Self.bootB),                        // direction swapped
            derive(key, Self.v4a, Self.v4b, Self.bootB, Self.bootB),                        // source rebooted
            derive(key, Self.v4a, Self.v4b, Self.bootA, Self.bootA),                        // destination rebooted
            derive(key, Self.v4a, IPAddress("10.0.0.3")!, Self.bootA, Self.bootB),          // other peer
            derive(KeyFixtures.aeadKey(id: 4), Self.v4a, Self.v4b, Self.bootA, Self.bootB), // same bytes, other ID
            derive(key, Self.v4a, Self.v4b, Self.bootA + Self.bootB, ""),                   // boot IDs shifted
        ]
        for variant in variants {
            #expect(variant != base)
        }
    }

    static let pythonHasCryptography: Bool = (try? Shell.blockingStatus(["python3", "-c", "import cryptography"]).0) == 0

    /// The reference: the construction of docs/key-file.md written with Python's `cryptography`.
    static let pythonReference = """
        import sys, ipaddress
        from cryptography.hazmat.primitives.kdf.hkdf import HKDF
        from cryptography.hazmat.primitives import hashes
        def l32(b): return len(b).to_bytes(4, 'big') + b
        ikm, purpose, key_id, alg, src, dst, sboot, dboot = sys.argv[1:9]
        s = ipaddress.ip_address(src).packed; d = ipaddress.ip_address(dst).packed
        info = bytes([int(purpose), int(key_id)]) + l32(alg.encode()) + bytes([len(s)]) + s + bytes([len(d)]) + d \\
            + l32(sboot.encode()) + l32(dboot.encode())
        ikm = bytes.fromhex(ikm)
        print(HKDF(algorithm=hashes.SHA256(), length=len(ikm), salt=b"ipsec-agent pair key v1", info=info).derive(ikm).hex())
        """

    @Test(.enabled(if: pythonHasCryptography, "python3 with the cryptography package"))
    func matchesIndependentImplementation() async throws {
        let addresses = [Self.v4a, Self.v4b, Self.v6a, IPAddress("192.168.7.200")!]
        for round in 0..<6 {
            let id = KeyID(Int.random(in: 1...15))!
            let key = round.isMultiple(of: 2)
                ? KeyGenerator.generate(id: id, algorithm: .aesGCM(keyBits: [128, 192, 256].randomElement()!, icvBits: 128))
                : KeyGenerator.generate(id: id, algorithm: .cbcHMAC(hash: "sha512", authKeyBytes: 64, aesKeyBits: 256))
            let source = addresses.randomElement()!, destination = addresses.randomElement()!
            let sourceBoot = UUID().uuidString.lowercased(), destinationBoot = UUID().uuidString.lowercased()
            let pair = KeyDerivation.pairKey(for: key, source: source, destination: destination, sourceBootID: sourceBoot, destinationBootID: destinationBoot)
            var components = [(key.encryptionKey, pair.encryptionKey, 1)]
            if let auth = key.authenticationKey, let derived = pair.authenticationKey { components.append((auth, derived, 2)) }
            for (input, derived, purpose) in components {
                let output = try await Shell.run([
                    "python3", "-c", Self.pythonReference, KeyFixtures.hex(input.revealed), String(purpose), String(id.rawValue),
                    key.algorithm.identifier, source.description, destination.description, sourceBoot, destinationBoot,
                ])
                #expect(output.trimmingCharacters(in: .whitespacesAndNewlines) == KeyFixtures.hex(derived.revealed))
            }
        }
    }

    /// The prepared HMAC (two SHA-256 states built once per key) is HMAC-SHA256 for every key length up to a block.
    @Test func preparedHMACIsHMACSHA256() {
        for keyLength in [0, 1, 20, 32, 63, 64] {
            let key = (0..<keyLength).map { _ in UInt8.random(in: 0...255) }
            let prepared = key.withUnsafeBytes { KeyDerivation.PreparedHMAC(key: $0) }
            for messageLength in [0, 1, 55, 56, 63, 64, 65, 119, 120, 200] {
                let a = (0..<messageLength).map { _ in UInt8.random(in: 0...255) }, b: [UInt8] = [7, 8]
                let expected = HMAC<SHA256>.authenticationCode(for: a + b, using: SymmetricKey(data: key))
                let got = a.withUnsafeBytes { pa in b.withUnsafeBytes { pb in prepared.authenticationCode(pa, pb) } }
                #expect(withUnsafeBytes(of: got) { Array($0) } == Array(expected),
                        "key \(keyLength) bytes, message \(messageLength) bytes")
            }
        }
    }

}
