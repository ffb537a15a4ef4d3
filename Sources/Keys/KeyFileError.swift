/// A problem with a key file: where it is (file, line, field) and what was expected versus found.
///
/// Never carries key bytes: `got` describes hex fields by their length or the position of a bad
/// character, and any token that could be key material (long, or with 8 or more hex digits) is replaced by its length.
public struct KeyFileError: Error, Hashable, Sendable, CustomStringConvertible {
    /// The part of the file the error is about.
    public enum Field: String, Hashable, Sendable, CustomStringConvertible {
        /// The file as a whole: unreadable, too large, not UTF-8, no key line.
        case file
        /// A key line's field count.
        case line
        /// The key ID (SPI), first field.
        case spi
        /// The algorithm name (`rfc4106(gcm(aes))` or `hmac(…)`), second field.
        case algorithm
        /// The AEAD key ‖ salt in hex.
        case aeadKey = "aead key"
        /// The AEAD ICV length in bits.
        case icv
        /// The HMAC key in hex.
        case authenticationKey = "authentication key"
        /// The encryption algorithm name after the HMAC key (`cbc(aes)`).
        case encryptionAlgorithm = "encryption algorithm"
        /// The CBC encryption key in hex.
        case encryptionKey = "encryption key"

        public var description: String { rawValue }
    }

    /// The file path (or the source name given to the parser).
    public let file: String
    /// 1-based line number; nil when the error concerns the whole file.
    public let line: Int?
    public let field: Field
    /// What the grammar allows at this place.
    public let expected: String
    /// What was found, described without key bytes.
    public let got: String

    public init(file: String, line: Int?, field: Field, expected: String, got: String) {
        self.file = file
        self.line = line
        self.field = field
        self.expected = expected
        self.got = got
    }

    public var description: String {
        let location = line.map { "\(file):\($0)" } ?? file
        return "\(location): \(field): expected \(expected), got \(got)"
    }
}

extension KeyFileError {
    /// Describes a token for an error message, unless it could be key material.
    ///
    /// Tokens longer than 24 characters, and tokens containing 8 or more hex digits anywhere (`0-9a-fA-F`,
    /// counted over the whole token, so `a1b2c3d4e5f6+` or `ab-cd-ef-01` are not echoed either), are described
    /// by their length only.
    static func describe(token: Substring) -> String {
        if token.count > 24 || token.count(where: \.isHexDigit) >= 8 {
            return "a \(token.count)-character token"
        }
        return String(reflecting: String(token))
    }
}
