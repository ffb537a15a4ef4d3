import IPsecPrimitives
import PropertyBased
import Synchronization
import Testing
@testable import Keys

@Suite("Key file grammar, property-based")
struct KeyFileParserPropertyTests {
    /// Words a key file is made of, plus near misses, so random lines often get deep into the grammar.
    static let vocabulary: [String] = [
        "1", "3+", "15", "0xf", "0", "16", "+", "0x", "-1", "rfc4106(gcm(aes))", "rfc4106(gcm(aes)", "gcm(aes)",
        "hmac(sha1)", "hmac(sha256)", "hmac(sha512)", "hmac(md5)", "hmac()", "cbc(aes)", "cbc(des)",
        "64", "96", "128", "256", "#", "# comment", "\t", "\r", "\n", "\n", "\n",
    ] + [4, 16, 20, 24, 28, 31, 32, 36, 40, 64].map { KeyFixtures.hex(KeyFixtures.bytes($0, from: 0x5A)) }

    static let tokenSoup = Generator(run: { rng in
        (0..<Int.random(in: 0...14, using: &rng)).map { _ in vocabulary.randomElement(using: &rng)! }
            .joined(separator: Bool.random(using: &rng) ? " " : "\t")
    })

    static let randomText = Gen<UInt8>.value(in: 0...255).array(of: 0...200).map { String(decoding: $0, as: UTF8.self) }

    /// Lines built field by field from valid and near-valid choices (hex of random length, right and
    /// wrong names, ICVs and SPIs), with fields sometimes dropped or repeated: many are accepted, so
    /// the invariants below are exercised on accepted keys, not only on errors.
    static let structuredFile = Generator(run: { rng in
        /// Half the time a length the grammar allows at this place, else any length.
        func hex(_ rng: inout any SeededRandomNumberGenerator, valid: [Int]) -> String {
            let count = Bool.random(using: &rng)
                ? valid.randomElement(using: &rng)!
                : [16, 20, 24, 28, 32, 36, 64, Int.random(in: 0...70, using: &rng)].randomElement(using: &rng)!
            let bytes = KeyFixtures.bytes(count, from: 0x5A)
            return (Bool.random(using: &rng) ? "0x" : "") + KeyFixtures.hex(bytes)
        }
        func line(_ rng: inout any SeededRandomNumberGenerator) -> String {
            let spi = ["1", "7", "15", "0x3", "0XA+", "4+", "12", "0", "16", "x"].randomElement(using: &rng)!
            var fields: [String]
            if Bool.random(using: &rng) {
                let name = ["rfc4106(gcm(aes))", "rfc4106(gcm(aes))", "rfc4106(gcm(aes))", "rfc4106(gcm(aes)", "hmac(sha256)"].randomElement(using: &rng)!
                let icv = ["64", "96", "128", "128", "128", "256", "0x80"].randomElement(using: &rng)!
                fields = [spi, name, hex(&rng, valid: [20, 28, 36]), icv]
            } else {
                let hash = ["sha1", "sha256", "sha512", "sha256", "md5"].randomElement(using: &rng)!
                let cbc = ["cbc(aes)", "cbc(aes)", "cbc(aes)", "cbc(des)"].randomElement(using: &rng)!
                let authBytes = ["sha1": 20, "sha256": 32, "sha512": 64][hash] ?? 32
                fields = [spi, "hmac(\(hash))", hex(&rng, valid: [authBytes]), cbc, hex(&rng, valid: [16, 24, 32])]
            }
            switch Int.random(in: 0..<8, using: &rng) {
            case 0: fields.remove(at: Int.random(in: 0..<fields.count, using: &rng))
            case 1: fields.insert(fields.randomElement(using: &rng)!, at: Int.random(in: 0...fields.count, using: &rng))
            default: break
            }
            return fields.joined(separator: " ")
        }
        return (0..<Int.random(in: 1...2, using: &rng)).map { _ in line(&rng) }.joined(separator: "\n")
    })

    /// A valid file of one to three lines (distinct SPIs), then one random edit: delete, insert or replace a character.
    static let mutatedFile = Generator(run: { rng in
        let ids = Array((1...15).shuffled(using: &rng).prefix(Int.random(in: 1...3, using: &rng)))
        var text = ids.map { id in
            Bool.random(using: &rng)
                ? KeyFixtures.aeadLine(spi: id, keyBytes: [20, 28, 36].randomElement(using: &rng)!, icv: [64, 96, 128].randomElement(using: &rng)!, start: 0x5A)
                : KeyFixtures.cbcLine(spi: id, start: 0x5A)
        }.joined(separator: "\n")
        var characters = Array(text)
        let position = Int.random(in: 0..<characters.count, using: &rng)
        let replacement: Character = Array("0123456789abcdefgxX+# \t\n()z").randomElement(using: &rng)!
        switch Int.random(in: 0..<3, using: &rng) {
        case 0: characters.remove(at: position)
        case 1: characters.insert(replacement, at: position)
        default: characters[position] = replacement
        }
        text = String(characters)
        return text
    })

    /// Every key the parser accepts satisfies the grammar's rules.
    static func expectValid(_ file: KeyFile) {
        #expect(!file.keys.isEmpty)
        #expect(Set(file.keys.map(\.id)).count == file.keys.count, "SPIs must be distinct")
        for key in file.keys {
            #expect(KeyID.range.contains(key.id.rawValue))
            switch key.algorithm {
            case .aesGCM(let keyBits, let icvBits):
                #expect([128, 192, 256].contains(keyBits))
                #expect([64, 96, 128].contains(icvBits))
                #expect(key.encryptionKey.count == keyBits / 8 + 4)
                #expect(key.authenticationKey == nil)
            case .cbcHMAC(let hash, let authKeyBytes, let aesKeyBits):
                #expect(["sha1": 20, "sha256": 32, "sha512": 64][hash] == authKeyBytes)
                #expect(key.authenticationKey?.count == authKeyBytes)
                #expect([128, 192, 256].contains(aesKeyBits))
                #expect(key.encryptionKey.count * 8 == aesKeyBits)
            }
        }
    }

    /// Errors point into the text and never repeat key material.
    static func expectWellFormed(_ error: KeyFileError, for text: String) {
        let lineCount = text.split(omittingEmptySubsequences: false, whereSeparator: \.isNewline).count
        if let line = error.line {
            #expect((1...lineCount).contains(line))
        }
        for bytes in [20, 28, 32, 36, 64] {
            #expect(!KeyFixtures.leaks(error.description, KeyFixtures.hex(KeyFixtures.bytes(bytes, from: 0x5A))), "\(error)")
            #expect(!KeyFixtures.leaks(error.description, KeyFixtures.hex(KeyFixtures.bytes(bytes, from: 0x5A &+ 0x80))), "\(error)")
        }
    }

    static func check(_ text: String) {
        do {
            expectValid(try KeyFileParser().parse(text, source: "prop"))
        } catch {
            expectWellFormed(error, for: text)
        }
    }

    @Test func randomBytesNeverCrash() async {
        await propertyCheck(count: 500, input: Self.randomText) { Self.check($0) }
    }

    @Test func randomTokenLinesNeverYieldAnInvalidKey() async {
        await propertyCheck(count: 1000, input: Self.tokenSoup) { Self.check($0) }
    }

    @Test func structuredLinesNeverYieldAnInvalidKey() async {
        let accepted = Mutex(0)
        await propertyCheck(count: 1500, input: Self.structuredFile) { text in
            if (try? KeyFileParser().parse(text, source: "prop")) != nil { accepted.withLock { $0 += 1 } }
            Self.check(text)
        }
        // The generator must reach acceptance often, or the invariants were never exercised.
        #expect(accepted.withLock { $0 } > 30)  // about 120 of 1500 on average
    }

    @Test func mutatedFilesNeverYieldAnInvalidKey() async {
        await propertyCheck(count: 1000, input: Self.mutatedFile) { Self.check($0) }
    }

    @Test func generatedKeysRoundTrip() async {
        let algorithms: [KeyAlgorithm] = KeyGenerator.Family.allCases.flatMap { family in
            KeyGenerator.aesKeyBits.map { KeyGenerator.algorithm(family, aesKeyBits: $0) }
        } + [.aesGCM(keyBits: 128, icvBits: 64), .cbcHMAC(hash: "sha1", authKeyBytes: 20, aesKeyBits: 128), .cbcHMAC(hash: "sha512", authKeyBytes: 64, aesKeyBits: 256)]
        await propertyCheck(count: 200, input: Gen.int(in: 1...15), Gen<KeyAlgorithm?>.element(of: algorithms)) { id, algorithm in
            let key = KeyGenerator.generate(id: KeyID(id)!, algorithm: algorithm!)
            let parsed = try KeyFileParser().parse(KeyFileWriter.line(for: key), source: "generated")
            #expect(parsed.activeKey == key)
            #expect(parsed.activeKey.fingerprint == key.fingerprint)
        }
    }
}
