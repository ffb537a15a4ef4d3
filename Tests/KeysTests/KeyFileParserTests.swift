import Foundation
import IPsecPrimitives
import Testing
@testable import Keys

@Suite("Key file grammar")
struct KeyFileParserTests {
    struct Accepted: CustomTestStringConvertible, Sendable {
        let name: String
        let text: String
        let id: Int
        let algorithm: KeyAlgorithm
        let encryptionKey: [UInt8]
        let authenticationKey: [UInt8]?
        var testDescription: String { name }
    }

    static let accepted: [Accepted] = [
        .init(name: "AEAD 128, SPI with +", text: "3+ rfc4106(gcm(aes)) \(KeyFixtures.hex(KeyFixtures.bytes(20))) 128",
              id: 3, algorithm: .aesGCM(keyBits: 128, icvBits: 128), encryptionKey: KeyFixtures.bytes(20), authenticationKey: nil),
        .init(name: "AEAD 192, ICV 96", text: "3 rfc4106(gcm(aes)) \(KeyFixtures.hex(KeyFixtures.bytes(28))) 96",
              id: 3, algorithm: .aesGCM(keyBits: 192, icvBits: 96), encryptionKey: KeyFixtures.bytes(28), authenticationKey: nil),
        .init(name: "AEAD 256, ICV 64, hex SPI and 0x key", text: "0xf rfc4106(gcm(aes)) 0x\(KeyFixtures.hex(KeyFixtures.bytes(36))) 64",
              id: 15, algorithm: .aesGCM(keyBits: 256, icvBits: 64), encryptionKey: KeyFixtures.bytes(36), authenticationKey: nil),
        .init(name: "uppercase 0X SPI and uppercase hex", text: "0X0A+ rfc4106(gcm(aes)) 0X\(KeyFixtures.hex(KeyFixtures.bytes(20, from: 0xA0)).uppercased()) 128",
              id: 10, algorithm: .aesGCM(keyBits: 128, icvBits: 128), encryptionKey: KeyFixtures.bytes(20, from: 0xA0), authenticationKey: nil),
        .init(name: "tabs, surrounding blanks, trailing comment, CRLF",
              text: "# rotated by ops\r\n\r\n\t 7 \trfc4106(gcm(aes))\t\(KeyFixtures.hex(KeyFixtures.bytes(20))) 128   # current\r\n",
              id: 7, algorithm: .aesGCM(keyBits: 128, icvBits: 128), encryptionKey: KeyFixtures.bytes(20), authenticationKey: nil),
        .init(name: "hmac(sha256) cbc(aes) 128", text: KeyFixtures.cbcLine(spi: 1),
              id: 1, algorithm: .cbcHMAC(hash: "sha256", authKeyBytes: 32, aesKeyBits: 128),
              encryptionKey: KeyFixtures.bytes(16, from: 0xC0), authenticationKey: KeyFixtures.bytes(32, from: 0x40)),
        .init(name: "hmac(sha1) cbc(aes) 192", text: KeyFixtures.cbcLine(spi: 2, hash: "sha1", authBytes: 20, keyBytes: 24) + "\n",
              id: 2, algorithm: .cbcHMAC(hash: "sha1", authKeyBytes: 20, aesKeyBits: 192),
              encryptionKey: KeyFixtures.bytes(24, from: 0xC0), authenticationKey: KeyFixtures.bytes(20, from: 0x40)),
        .init(name: "hmac(sha512) with 0x keys, cbc(aes) 256",
              text: "15+ hmac(sha512) 0x\(KeyFixtures.hex(KeyFixtures.bytes(64))) cbc(aes) 0x\(KeyFixtures.hex(KeyFixtures.bytes(32, from: 0x80)))",
              id: 15, algorithm: .cbcHMAC(hash: "sha512", authKeyBytes: 64, aesKeyBits: 256),
              encryptionKey: KeyFixtures.bytes(32, from: 0x80), authenticationKey: KeyFixtures.bytes(64)),
    ]

    @Test("accepted form", arguments: accepted)
    func acceptsForm(_ form: Accepted) throws {
        let file = try KeyFileParser().parse(form.text, source: "keys")
        #expect(file.keys.count == 1)
        let key = file.activeKey
        #expect(key.id == KeyID(form.id)!)
        #expect(key.algorithm == form.algorithm)
        #expect(key.encryptionKey.revealed == form.encryptionKey)
        #expect(key.authenticationKey?.revealed == form.authenticationKey)
        #expect(!file.insecurePermissions)
    }

    struct Rejected: CustomTestStringConvertible, Sendable {
        let name: String
        let text: String
        let line: Int?
        let field: KeyFileError.Field
        let expected: String
        let got: String
        var testDescription: String { name }
    }

    static let key20 = KeyFixtures.hex(KeyFixtures.bytes(20))
    static let sha256Key = KeyFixtures.hex(KeyFixtures.bytes(32))
    static let aes128Key = KeyFixtures.hex(KeyFixtures.bytes(16))
    static let spiExpected = "a key ID 1…15 (decimal or 0x hex, optional trailing +)"
    static let hexExpected = "hex digits (optional 0x prefix)"

    static let rejected: [Rejected] = [
        .init(name: "empty file", text: "", line: nil, field: .file, expected: "at least one key line", got: "an empty file"),
        .init(name: "only comments", text: "# nothing\n\n   \n", line: nil, field: .file, expected: "at least one key line", got: "only blank lines and comments"),
        .init(name: "SPI 0", text: "0 rfc4106(gcm(aes)) \(key20) 128", line: 1, field: .spi, expected: spiExpected, got: "\"0\""),
        .init(name: "SPI 16", text: "16 rfc4106(gcm(aes)) \(key20) 128", line: 1, field: .spi, expected: spiExpected, got: "\"16\""),
        .init(name: "SPI 0x10", text: "0x10 rfc4106(gcm(aes)) \(key20) 128", line: 1, field: .spi, expected: spiExpected, got: "\"0x10\""),
        .init(name: "SPI negative", text: "-1 rfc4106(gcm(aes)) \(key20) 128", line: 1, field: .spi, expected: spiExpected, got: "\"-1\""),
        .init(name: "SPI word", text: "three rfc4106(gcm(aes)) \(key20) 128", line: 1, field: .spi, expected: spiExpected, got: "\"three\""),
        .init(name: "SPI double +", text: "3++ rfc4106(gcm(aes)) \(key20) 128", line: 1, field: .spi, expected: spiExpected, got: "\"3++\""),
        .init(name: "SPI + alone", text: "+ rfc4106(gcm(aes)) \(key20) 128", line: 1, field: .spi, expected: spiExpected, got: "\"+\""),
        .init(name: "SPI huge", text: "99999999999999999999999 rfc4106(gcm(aes)) \(key20) 128", line: 1, field: .spi, expected: spiExpected, got: "a 23-character token"),
        .init(name: "key in SPI position is not echoed", text: "\(key20) 3 rfc4106(gcm(aes)) 128", line: 1, field: .spi, expected: spiExpected, got: "a 40-character token"),
        .init(name: "SPI only", text: "3", line: 1, field: .line,
              expected: "SPI, algorithm and keys (4 fields for rfc4106(gcm(aes)), 5 for hmac(…) cbc(aes))", got: "1 field"),
        .init(name: "unknown algorithm", text: "3 gcm(aes) \(key20) 128", line: 1, field: .algorithm,
              expected: "rfc4106(gcm(aes)) or hmac(sha1|sha256|sha512)", got: "\"gcm(aes)\""),
        .init(name: "unknown hmac hash", text: "3 hmac(md5) \(sha256Key) cbc(aes) \(aes128Key)", line: 1, field: .algorithm,
              expected: "hmac(sha1), hmac(sha256) or hmac(sha512)", got: "\"hmac(md5)\""),
        .init(name: "AEAD without ICV", text: "3 rfc4106(gcm(aes)) \(key20)", line: 1, field: .line, expected: "4 fields: SPI rfc4106(gcm(aes)) KEY ICV", got: "3 fields"),
        .init(name: "AEAD extra field", text: "3 rfc4106(gcm(aes)) \(key20) 128 x", line: 1, field: .line, expected: "4 fields: SPI rfc4106(gcm(aes)) KEY ICV", got: "5 fields"),
        .init(name: "AEAD key 16 bytes (salt missing)", text: "3 rfc4106(gcm(aes)) \(aes128Key) 128", line: 1, field: .aeadKey,
              expected: "20, 28 or 36 bytes (AES-128/192/256 key + 4-byte salt)", got: "16 bytes"),
        .init(name: "AEAD key 19 bytes", text: "3 rfc4106(gcm(aes)) \(KeyFixtures.hex(KeyFixtures.bytes(19))) 128", line: 1, field: .aeadKey,
              expected: "20, 28 or 36 bytes (AES-128/192/256 key + 4-byte salt)", got: "19 bytes"),
        .init(name: "odd hex digits", text: "3 rfc4106(gcm(aes)) \(key20)0 128", line: 1, field: .aeadKey, expected: "an even number of hex digits", got: "41 digits"),
        .init(name: "non-hex character", text: "3 rfc4106(gcm(aes)) 0x0123g\(key20.dropFirst(5)) 128", line: 1, field: .aeadKey,
              expected: hexExpected, got: "a non-hex character at position 7"),
        .init(name: "0x without digits", text: "3 rfc4106(gcm(aes)) 0x 128", line: 1, field: .aeadKey, expected: hexExpected, got: "no digits"),
        .init(name: "ICV 256", text: "3 rfc4106(gcm(aes)) \(key20) 256", line: 1, field: .icv, expected: "ICV bits 64, 96 or 128", got: "\"256\""),
        .init(name: "ICV with sign", text: "3 rfc4106(gcm(aes)) \(key20) +128", line: 1, field: .icv, expected: "ICV bits 64, 96 or 128", got: "\"+128\""),
        .init(name: "cbc-hmac missing key", text: "3 hmac(sha256) \(sha256Key) cbc(aes)", line: 1, field: .line,
              expected: "5 fields: SPI hmac(sha256) AUTH-KEY cbc(aes) KEY", got: "4 fields"),
        .init(name: "sha256 with a 20-byte auth key", text: "3 hmac(sha256) \(key20) cbc(aes) \(aes128Key)", line: 1, field: .authenticationKey,
              expected: "32 bytes for hmac(sha256)", got: "20 bytes"),
        .init(name: "sha1 with a 32-byte auth key", text: "3 hmac(sha1) \(sha256Key) cbc(aes) \(aes128Key)", line: 1, field: .authenticationKey,
              expected: "20 bytes for hmac(sha1)", got: "32 bytes"),
        .init(name: "sha512 with a 32-byte auth key", text: "3 hmac(sha512) \(sha256Key) cbc(aes) \(aes128Key)", line: 1, field: .authenticationKey,
              expected: "64 bytes for hmac(sha512)", got: "32 bytes"),
        .init(name: "bad auth key hex", text: "3 hmac(sha256) zz cbc(aes) \(aes128Key)", line: 1, field: .authenticationKey,
              expected: hexExpected, got: "a non-hex character at position 1"),
        .init(name: "cbc(des)", text: "3 hmac(sha256) \(sha256Key) cbc(des) \(aes128Key)", line: 1, field: .encryptionAlgorithm,
              expected: "cbc(aes)", got: "\"cbc(des)\""),
        .init(name: "CBC key 15 bytes", text: "3 hmac(sha256) \(sha256Key) cbc(aes) \(KeyFixtures.hex(KeyFixtures.bytes(15)))", line: 1, field: .encryptionKey,
              expected: "16, 24 or 32 bytes (AES-128/192/256)", got: "15 bytes"),
        .init(name: "error on a later line", text: "# keys\n\n1 rfc4106(gcm(aes)) \(key20) 128\n2 rfc4106(gcm(aes)) \(key20) 12\n", line: 4, field: .icv,
              expected: "ICV bits 64, 96 or 128", got: "\"12\""),
        .init(name: "duplicate SPI", text: "3 rfc4106(gcm(aes)) \(key20) 128\n4 rfc4106(gcm(aes)) \(key20) 128\n0x3+ rfc4106(gcm(aes)) \(key20) 128",
              line: 3, field: .spi, expected: "a key ID not used on an earlier line", got: "3 (also on line 1)"),
        .init(name: "bad earlier line rejects the file", text: "3 rfc4106(gcm(aes)) \(key20) 100\n4 rfc4106(gcm(aes)) \(key20) 128", line: 1, field: .icv,
              expected: "ICV bits 64, 96 or 128", got: "\"100\""),
    ]

    @Test("rejected form", arguments: rejected)
    func rejectsForm(_ form: Rejected) {
        let expected = KeyFileError(file: "keys", line: form.line, field: form.field, expected: form.expected, got: form.got)
        #expect(throws: expected) { try KeyFileParser().parse(form.text, source: "keys") }
        let location = form.line.map { "keys:\($0)" } ?? "keys"
        #expect(expected.description == "\(location): \(form.field): expected \(form.expected), got \(form.got)")
        for secret in [Self.key20, Self.sha256Key, Self.aes128Key] {
            #expect(!KeyFixtures.leaks(expected.description, secret))
        }
    }

    @Test func lastLineIsActive() throws {
        let text = """
            # previous key, kept during the rotation
            3 rfc4106(gcm(aes)) \(KeyFixtures.hex(KeyFixtures.bytes(20, from: 1))) 128
            4+ rfc4106(gcm(aes)) \(KeyFixtures.hex(KeyFixtures.bytes(20, from: 2))) 128
            """
        let file = try KeyFileParser().parse(text, source: "keys")
        #expect(file.keys.map(\.id.rawValue) == [3, 4])
        #expect(file.activeKey.id == KeyID(4)!)
        #expect(file.activeKey.encryptionKey.revealed == KeyFixtures.bytes(20, from: 2))
    }

    @Test func descriptionsNeverShowKeyBytes() throws {
        let file = try KeyFileParser().parse(KeyFixtures.cbcLine(spi: 5), source: "keys")
        let key = file.activeKey
        let texts = [file.description, key.description, String(describing: key), String(reflecting: key), "\(key.encryptionKey)", key.fingerprint]
        for text in texts {
            #expect(!KeyFixtures.leaks(text, KeyFixtures.hex(KeyFixtures.bytes(32, from: 0x40))), "\(text)")
            #expect(!KeyFixtures.leaks(text, KeyFixtures.hex(KeyFixtures.bytes(16, from: 0xC0))), "\(text)")
        }
    }

    /// No echoed token shows 8 or more hex digits, whatever its length or the other characters in it.
    @Test func tokensWithEightHexDigitsAreNeverEchoed() {
        for token in ["a1b2c3d4e5f60718293a+", "a1b2c3d4+", "ab-cd-ef-01", "0x1234abcd", "12345678", "deadbeef"] {
            #expect(KeyFileError.describe(token: token[...]) == "a \(token.count)-character token", "\(token)")
        }
        for token in ["16", "3++", "hmac(md5)", "a1b2c3d+"] {
            #expect(KeyFileError.describe(token: token[...]) == "\"\(token)\"", "\(token)")
        }
        #expect(throws: KeyFileError(file: "keys", line: 1, field: .spi, expected: "a key ID 1…15 (decimal or 0x hex, optional trailing +)",
                                     got: "a 21-character token")) {
            try KeyFileParser().parse("a1b2c3d4e5f60718293a+ rfc4106(gcm(aes)) \(KeyFixtures.hex(KeyFixtures.bytes(20, from: 1))) 128", source: "keys")
        }
    }

    @Test func loadsFileAndReportsPermissions() throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        try directory.writeInPlace("keys", KeyFixtures.aeadLine(spi: 9) + "\n", mode: 0o600)
        let secure = try KeyFileParser().load(path: directory.file("keys"))
        #expect(secure.activeKey.id == KeyID(9)!)
        #expect(secure.source == directory.file("keys"))
        #expect(!secure.insecurePermissions)
        #expect(chmod(directory.file("keys"), 0o644) == 0)
        #expect(try KeyFileParser().load(path: directory.file("keys")).insecurePermissions)
    }

    @Test func loadRejectsWholeFileProblems() throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let missing = directory.file("missing")
        #expect(throws: KeyFileError(file: missing, line: nil, field: .file, expected: "a readable regular file", got: "cannot read it (No such file or directory)")) {
            try KeyFileParser().load(path: missing)
        }
        #expect(throws: KeyFileError(file: directory.path, line: nil, field: .file, expected: "a readable regular file", got: "is a directory, not a regular file")) {
            try KeyFileParser().load(path: directory.path)
        }
        try directory.writeInPlace("latin1", "3 rfc4106(gcm(aes)) \u{FF}")
        let latin1 = directory.file("latin1")
        let fd = open(latin1, O_WRONLY | O_TRUNC)
        try directory.writeAll(fd, [0x33, 0x20, 0xFF, 0xFE])
        close(fd)
        #expect(throws: KeyFileError(file: latin1, line: nil, field: .file, expected: "UTF-8 text", got: "invalid UTF-8")) {
            try KeyFileParser().load(path: latin1)
        }
        let big = String(repeating: "# padding\n", count: KeyFileParser.maximumFileSize / 10 + 1)
        try directory.writeInPlace("big", big)
        #expect(throws: KeyFileError(file: directory.file("big"), line: nil, field: .file,
                                     expected: "a readable regular file", got: "is larger than \(KeyFileParser.maximumFileSize) bytes")) {
            try KeyFileParser().load(path: directory.file("big"))
        }
    }

    /// A FIFO, a socket or a device at the key path (directly or behind Kubernetes' `..data` link) is refused at
    /// once with its type named; opening a FIFO for reading would otherwise block until a writer appears.
    @Test func loadRefusesSpecialFilesWithoutBlocking() throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let fifo = directory.file("fifo")
        #expect(mkfifo(fifo, 0o600) == 0)
        #expect(throws: KeyFileError(file: fifo, line: nil, field: .file, expected: "a readable regular file",
                                     got: "is a FIFO (named pipe), not a regular file")) {
            try KeyFileParser().load(path: fifo)
        }
        // The projected-volume layout: keys -> ..data/keys, ..data -> ..2026_x (holding a FIFO).
        #expect(mkdir(directory.file("..2026_x"), 0o700) == 0)
        #expect(mkfifo(directory.file("..2026_x/keys"), 0o600) == 0)
        #expect(symlink("..2026_x", directory.file("..data")) == 0)
        #expect(symlink("..data/keys", directory.file("keys")) == 0)
        #expect(throws: KeyFileError(file: directory.file("keys"), line: nil, field: .file, expected: "a readable regular file",
                                     got: "is a FIFO (named pipe), not a regular file")) {
            try KeyFileParser().load(path: directory.file("keys"))
        }
        #expect(throws: KeyFileError(file: "/dev/null", line: nil, field: .file, expected: "a readable regular file",
                                     got: "is a character device, not a regular file")) {
            try KeyFileParser().load(path: "/dev/null")
        }
        let socketPath = directory.file("sock")
        let socketFD = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(socketFD) }
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            let bytes = Array(socketPath.utf8.prefix(raw.count - 1))
            raw.copyBytes(from: bytes + [0])
        }
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(socketFD, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        #expect(bound == 0)
        #expect(throws: KeyFileError(file: socketPath, line: nil, field: .file, expected: "a readable regular file",
                                     got: "is a socket, not a regular file")) {
            try KeyFileParser().load(path: socketPath)
        }
    }
}
