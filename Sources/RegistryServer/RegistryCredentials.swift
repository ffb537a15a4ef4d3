import Crypto
import IPsecPrimitives

#if canImport(FoundationEssentials)
    import FoundationEssentials
#else
    import Foundation
#endif

/// Derives and checks the embedded registry's credentials from the cluster secret.
///
/// A node's credential is `hex(HMAC-SHA256(secret, nodeName))`; the admin credential is the same
/// derivation for the reserved name `_admin` (not a valid node name, so no node can hold it). The secret
/// never leaves this type; its description shows nothing.
public struct RegistryCredentials: Sendable, CustomStringConvertible {
    /// The reserved name whose credential may delete any record.
    public static let adminName = "_admin"
    /// Shortest accepted cluster secret.
    public static let minimumSecretLength = 16

    /// Why the cluster secret could not be used; names the file, never its content.
    public enum Failure: Error, CustomStringConvertible {
        case unreadable(description: String)
        case tooShort(path: String, length: Int)

        public var description: String {
            switch self {
            case .unreadable(let description): description
            case .tooShort(let path, let length):
                "secret file \(path): \(length) bytes, at least \(RegistryCredentials.minimumSecretLength) required"
            }
        }
    }

    private let key: SymmetricKey

    public init(secret: SecretBytes) {
        key = secret.withUnsafeBytes { SymmetricKey(data: $0) }
    }

    /// Reads the secret from a file; one trailing newline is ignored. The file must be a regular file that group
    /// and others cannot access (with `shared: .warn`, `warning` says so instead of the read failing).
    public init(secretFile path: String, shared: SecretFile.SharedPolicy = .refuse) throws {
        let read: (bytes: [UInt8], warning: String?)
        do {
            read = try SecretFile.read(path: path, role: "secret file", shared: shared)
        } catch {
            throw Failure.unreadable(description: error.description)
        }
        var bytes = read.bytes
        if bytes.last == UInt8(ascii: "\n") { bytes.removeLast() }
        if bytes.last == UInt8(ascii: "\r") { bytes.removeLast() }
        guard bytes.count >= RegistryCredentials.minimumSecretLength else {
            throw Failure.tooShort(path: path, length: bytes.count)
        }
        self.init(secret: SecretBytes(bytes))
        warning = read.warning
    }

    /// Set when the secret file was read although group or others can access it.
    public private(set) var warning: String?

    /// The bearer credential of `name` (a node name, or `adminName`).
    ///
    /// Generation 0 is `hex(HMAC(secret, name))`; a later generation `g` (after `registry revoke`) is
    /// `g<g>.` followed by `hex(HMAC(secret, name ‖ 0x00 ‖ decimal g))`, so a revoked node's old credential no
    /// longer matches while the secret stays.
    public func credential(for name: String, generation: Int64 = 0) -> String {
        var input = Array(name.utf8)
        if generation > 0 { input += [0] + Array(String(generation).utf8) }
        let mac = HMAC<SHA256>.authenticationCode(for: input, using: key)
        let hex = mac.map { byte in
            let digits = Array("0123456789abcdef".utf8)
            return String(decoding: [digits[Int(byte >> 4)], digits[Int(byte & 0x0F)]], as: UTF8.self)
        }.joined()
        return generation > 0 ? "g\(generation).\(hex)" : hex
    }

    /// The generation a token claims (`g<N>.` prefix; none is 0), or nil when the prefix is malformed.
    public static func generation(of token: String) -> Int64? {
        guard token.hasPrefix("g") else { return 0 }
        guard let dot = token.firstIndex(of: "."), let g = Int64(token[token.index(after: token.startIndex)..<dot]),
            g > 0
        else {
            return nil
        }
        return g
    }

    /// The admin credential.
    public var adminCredential: String { credential(for: RegistryCredentials.adminName) }

    /// True when `token` is the credential of `name` of a generation at least `minimumGeneration`; constant
    /// time in the token's content.
    public func isValid(token: String, for name: String, minimumGeneration: Int64 = 0) -> Bool {
        guard let generation = Self.generation(of: token), generation >= minimumGeneration else { return false }
        let expected = Array(credential(for: name, generation: generation).utf8)
        let given = Array(token.utf8)
        guard expected.count == given.count else { return false }
        var diff: UInt8 = 0
        for i in expected.indices { diff |= expected[i] ^ given[i] }
        return diff == 0
    }

    public var description: String { "RegistryCredentials(<secret>)" }
}
