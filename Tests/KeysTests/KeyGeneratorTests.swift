import Foundation
import IPsecPrimitives
import Testing
import TestSupport
@testable import Keys

@Suite("Key generation and atomic writing")
struct KeyGeneratorTests {
    @Test("generated key passes the parser", arguments: KeyGenerator.Family.allCases, KeyGenerator.aesKeyBits)
    func generatedFilePassesCheck(family: KeyGenerator.Family, bits: Int) throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let algorithm = KeyGenerator.algorithm(family, aesKeyBits: bits)
        let key = KeyGenerator.generate(id: KeyID(15)!, algorithm: algorithm)
        try KeyFileWriter.write([key], to: directory.file("keys"))
        var info = stat()
        #expect(stat(directory.file("keys"), &info) == 0)
        #expect(info.st_mode & 0o777 == 0o600)
        let file = try KeyFileParser().load(path: directory.file("keys"))
        #expect(file.activeKey == key)
        #expect(!file.insecurePermissions)
        // No temporary file is left behind.
        #expect(try FileManager.default.contentsOfDirectory(atPath: directory.path) == ["keys"])
    }

    @Test func keysAreRandom() {
        let algorithm = KeyGenerator.algorithm(.cbcHMAC, aesKeyBits: 256)
        let first = KeyGenerator.generate(id: KeyID(1)!, algorithm: algorithm)
        let second = KeyGenerator.generate(id: KeyID(1)!, algorithm: algorithm)
        #expect(first.encryptionKey != second.encryptionKey)
        #expect(first.authenticationKey != second.authenticationKey)
        #expect(first.fingerprint != second.fingerprint)
    }

    @Test func writerReplacesAndKeepsSeveralLines() throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        try directory.writeInPlace("keys", "garbage\n", mode: 0o644)
        let keys = [KeyFixtures.aeadKey(id: 14), KeyFixtures.aeadKey(id: 15, start: 7)]
        try KeyFileWriter.write(keys, to: directory.file("keys"))
        let file = try KeyFileParser().load(path: directory.file("keys"))
        #expect(file.keys == keys)
        #expect(!file.insecurePermissions)
    }

    @Test func writerReportsAMissingDirectory() {
        let path = "/nonexistent-\(UInt64.random(in: 0...UInt64.max))/keys"
        #expect(throws: KeyFileError(file: path, line: nil, field: .file, expected: "a writable directory", got: "No such file or directory")) {
            try KeyFileWriter.write([KeyFixtures.aeadKey(id: 1)], to: path)
        }
    }

    /// The built CLI, when present: `key generate --out` then `key check` (and `--previous`).
    static let binary: String? = {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        let candidate = root.appendingPathComponent(".build/debug/ipsec-agent").path
        return FileManager.default.isExecutableFile(atPath: candidate) ? candidate : nil
    }()

    @Test(.enabled(if: binary != nil, "needs .build/debug/ipsec-agent (swift build)"))
    func commandLineGenerateThenCheck() async throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let binary = try #require(Self.binary)
        let current = directory.file("current"), next = directory.file("next")
        try await Shell.run(binary, "key", "generate", "--spi", "15", "--algorithm", "aead", "--out", current)
        try await Shell.run(binary, "key", "generate", "--spi", "15", "--out", next)
        try await Shell.run(binary, "key", "generate", "--out", next)  // follows the file's active key: 15 → 1
        let check = try await Shell.run(binary, "key", "check", next, "--previous", current)
        let key = try KeyFileParser().load(path: next).activeKey
        #expect(key.id == KeyID(1)!)
        #expect(check == "spi 1, rfc4106(gcm(aes)) icv=128, 256-bit key, fingerprint \(key.fingerprint), rotation 15 → 1\n")
        #expect(!KeyFixtures.leaks(check, KeyFixtures.hex(key.encryptionKey.revealed)))

        let (sameStatus, sameOutput) = try await Shell.status([binary, "key", "check", current, "--previous", current])
        #expect(sameStatus == 1)
        #expect(sameOutput.contains("same SPI 15"))

        try directory.writeInPlace("bad", "3 rfc4106(gcm(aes)) 00 128\n")
        let (badStatus, badOutput) = try await Shell.status([binary, "key", "check", directory.file("bad")])
        #expect(badStatus == 1)
        #expect(badOutput == "error: \(directory.file("bad")):1: aead key: expected 20, 28 or 36 bytes (AES-128/192/256 key + 4-byte salt), got 1 bytes\n")
    }
}
