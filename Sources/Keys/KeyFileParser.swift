import IPsecPrimitives

/// Parses the Cilium-compatible key file grammar into a `KeyFile`.
///
/// ```
/// SPI[+] rfc4106(gcm(aes)) <hex key ‖ salt: 20, 28 or 36 bytes> <ICV bits: 64, 96 or 128>
/// SPI[+] hmac(sha1|sha256|sha512) <hex auth key> cbc(aes) <hex key: 16, 24 or 32 bytes>
/// ```
///
/// SPI is 1…15, decimal or `0x` hex; a trailing `+` is accepted and ignored. Hex fields accept a
/// `0x` prefix. `#` starts a comment; blank lines are skipped. See `KeyFile` for the multi-line rule
/// and docs/key-file.md for the complete grammar and the error list.
public struct KeyFileParser: Sendable {
    /// Files larger than this are rejected before parsing (a key file is a few hundred bytes).
    public static let maximumFileSize = 64 * 1024

    static let aeadName = "rfc4106(gcm(aes))"
    static let cbcName = "cbc(aes)"
    /// HMAC hash names with their required authentication key length in bytes.
    static let hmacKeyBytes: [(hash: String, bytes: Int)] = [("sha1", 20), ("sha256", 32), ("sha512", 64)]
    static let aeadKeyBytes = [20, 28, 36]
    static let icvBits = [64, 96, 128]
    static let aesKeyBytes = [16, 24, 32]

    public init() {}

    /// Reads and parses the file at `path` (following symlinks), noting insecure permissions.
    public func load(path: String) throws(KeyFileError) -> KeyFile {
        let contents: RegularFile
        do {
            contents = try RegularFile.read(path: path, limit: Self.maximumFileSize)
        } catch {
            throw KeyFileError(
                file: path, line: nil, field: .file, expected: "a readable regular file", got: error.problem)
        }
        guard let text = String(validating: contents.bytes, as: UTF8.self) else {
            throw KeyFileError(file: path, line: nil, field: .file, expected: "UTF-8 text", got: "invalid UTF-8")
        }
        let parsed = try parse(text, source: path)
        return KeyFile(source: path, keys: parsed.keys, insecurePermissions: contents.accessibleByOthers)
    }

    /// Parses key file text. `source` names the content in errors.
    public func parse(_ text: String, source: String) throws(KeyFileError) -> KeyFile {
        var keys: [IPsecKey] = []
        var lineOfID: [KeyID: Int] = [:]
        for (index, rawLine) in text.split(omittingEmptySubsequences: false, whereSeparator: \.isNewline).enumerated() {
            let lineNumber = index + 1
            let content = rawLine.prefix { $0 != "#" }
            let fields = content.split(whereSeparator: \.isWhitespace)
            if fields.isEmpty { continue }
            let key = try LineParser(source: source, line: lineNumber, fields: fields).parse()
            if let earlier = lineOfID[key.id] {
                throw KeyFileError(
                    file: source, line: lineNumber, field: .spi,
                    expected: "a key ID not used on an earlier line", got: "\(key.id) (also on line \(earlier))"
                )
            }
            lineOfID[key.id] = lineNumber
            keys.append(key)
        }
        guard !keys.isEmpty else {
            throw KeyFileError(
                file: source, line: nil, field: .file,
                expected: "at least one key line", got: text.isEmpty ? "an empty file" : "only blank lines and comments"
            )
        }
        return KeyFile(source: source, keys: keys)
    }
}

/// Parses the fields of one non-blank line.
private struct LineParser {
    let source: String
    let line: Int
    let fields: [Substring]

    func error(_ field: KeyFileError.Field, expected: String, got: String) -> KeyFileError {
        KeyFileError(file: source, line: line, field: field, expected: expected, got: got)
    }

    func parse() throws(KeyFileError) -> IPsecKey {
        let id = try parseSPI(fields[0])
        guard fields.count >= 2 else {
            throw error(
                .line, expected: "SPI, algorithm and keys (4 fields for rfc4106(gcm(aes)), 5 for hmac(…) cbc(aes))",
                got: "1 field")
        }
        let algorithm = fields[1]
        if algorithm == KeyFileParser.aeadName {
            return try parseAEAD(id: id)
        }
        if let hash = Self.hmacHash(algorithm) {
            guard let expectedBytes = KeyFileParser.hmacKeyBytes.first(where: { $0.hash == hash })?.bytes else {
                throw error(
                    .algorithm, expected: "hmac(sha1), hmac(sha256) or hmac(sha512)",
                    got: KeyFileError.describe(token: algorithm))
            }
            return try parseCBCHMAC(id: id, hash: String(hash), authKeyBytes: expectedBytes)
        }
        throw error(
            .algorithm, expected: "rfc4106(gcm(aes)) or hmac(sha1|sha256|sha512)",
            got: KeyFileError.describe(token: algorithm))
    }

    /// `hmac(X)` → X, else nil.
    static func hmacHash(_ token: Substring) -> Substring? {
        guard token.hasPrefix("hmac("), token.hasSuffix(")"), token.count > 6 else { return nil }
        return token.dropFirst(5).dropLast()
    }

    func parseAEAD(id: KeyID) throws(KeyFileError) -> IPsecKey {
        guard fields.count == 4 else {
            throw error(.line, expected: "4 fields: SPI rfc4106(gcm(aes)) KEY ICV", got: "\(fields.count) fields")
        }
        let key = try decodeHex(fields[2], field: .aeadKey)
        guard KeyFileParser.aeadKeyBytes.contains(key.count) else {
            throw error(
                .aeadKey, expected: "20, 28 or 36 bytes (AES-128/192/256 key + 4-byte salt)", got: "\(key.count) bytes")
        }
        let icvToken = fields[3]
        guard icvToken.allSatisfy({ $0.isASCII && $0.isNumber }), let icv = Int(icvToken),
            KeyFileParser.icvBits.contains(icv)
        else {
            throw error(.icv, expected: "ICV bits 64, 96 or 128", got: KeyFileError.describe(token: icvToken))
        }
        return IPsecKey(
            id: id, algorithm: .aesGCM(keyBits: (key.count - 4) * 8, icvBits: icv), encryptionKey: SecretBytes(key))
    }

    func parseCBCHMAC(id: KeyID, hash: String, authKeyBytes: Int) throws(KeyFileError) -> IPsecKey {
        guard fields.count == 5 else {
            throw error(
                .line, expected: "5 fields: SPI hmac(\(hash)) AUTH-KEY cbc(aes) KEY", got: "\(fields.count) fields")
        }
        let authKey = try decodeHex(fields[2], field: .authenticationKey)
        guard authKey.count == authKeyBytes else {
            throw error(
                .authenticationKey, expected: "\(authKeyBytes) bytes for hmac(\(hash))", got: "\(authKey.count) bytes")
        }
        guard fields[3] == KeyFileParser.cbcName else {
            throw error(.encryptionAlgorithm, expected: "cbc(aes)", got: KeyFileError.describe(token: fields[3]))
        }
        let key = try decodeHex(fields[4], field: .encryptionKey)
        guard KeyFileParser.aesKeyBytes.contains(key.count) else {
            throw error(.encryptionKey, expected: "16, 24 or 32 bytes (AES-128/192/256)", got: "\(key.count) bytes")
        }
        return IPsecKey(
            id: id,
            algorithm: .cbcHMAC(hash: hash, authKeyBytes: authKeyBytes, aesKeyBits: key.count * 8),
            encryptionKey: SecretBytes(key),
            authenticationKey: SecretBytes(authKey)
        )
    }

    func parseSPI(_ token: Substring) throws(KeyFileError) -> KeyID {
        let expected = "a key ID 1…15 (decimal or 0x hex, optional trailing +)"
        let number = token.hasSuffix("+") ? token.dropLast() : token
        let value: UInt64?
        if number.hasPrefix("0x") || number.hasPrefix("0X") {
            let digits = number.dropFirst(2)
            value = digits.allSatisfy { $0.isASCII && $0.isHexDigit } ? UInt64(digits, radix: 16) : nil
        } else {
            value = number.allSatisfy { $0.isASCII && $0.isNumber } ? UInt64(number) : nil
        }
        // The token is echoed only through `describe`: a misplaced key must not reach the message.
        guard let value, let id = KeyID(value) else {
            throw error(.spi, expected: expected, got: KeyFileError.describe(token: token))
        }
        return id
    }

    /// Decodes hex (optional `0x`), describing problems without echoing the digits.
    func decodeHex(_ token: Substring, field: KeyFileError.Field) throws(KeyFileError) -> [UInt8] {
        let expected = "hex digits (optional 0x prefix)"
        let digits = token.hasPrefix("0x") || token.hasPrefix("0X") ? token.dropFirst(2) : token
        guard !digits.isEmpty else {
            throw error(field, expected: expected, got: "no digits")
        }
        var bytes: [UInt8] = []
        bytes.reserveCapacity(digits.utf8.count / 2)
        var high: UInt8?
        for (offset, character) in digits.enumerated() {
            guard let ascii = character.asciiValue, let nibble = Self.nibble(ascii) else {
                let position = offset + 1 + (token.count - digits.count)
                throw error(field, expected: expected, got: "a non-hex character at position \(position)")
            }
            if let h = high {
                bytes.append(h << 4 | nibble)
                high = nil
            } else {
                high = nibble
            }
        }
        guard high == nil else {
            throw error(field, expected: "an even number of hex digits", got: "\(digits.count) digits")
        }
        return bytes
    }

    static func nibble(_ ascii: UInt8) -> UInt8? {
        switch ascii {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): ascii - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): ascii - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): ascii - UInt8(ascii: "A") + 10
        default: nil
        }
    }
}
