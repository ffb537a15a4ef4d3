import Crypto
#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import IPsecPrimitives

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

    public enum Failure: Error, CustomStringConvertible {
        case unreadable(path: String, reason: String)
        case tooShort(path: String, length: Int)

        public var description: String {
            switch self {
            case .unreadable(let path, let reason): "secret file \(path): cannot read (\(reason))"
            case .tooShort(let path, let length):
                "secret file \(path): \(length) bytes, at least \(RegistryCredentials.minimumSecretLength) required"
            }
        }
    }

    private let key: SymmetricKey

    public init(secret: SecretBytes) {
        key = secret.withUnsafeBytes { SymmetricKey(data: $0) }
    }

    /// Reads the secret from a file; one trailing newline is ignored.
    public init(secretFile path: String) throws {
        let data: Data
        do {
            data = try Data(contentsOf: URL(fileURLWithPath: path))
        } catch {
            throw Failure.unreadable(path: path, reason: "\(type(of: error))")
        }
        var bytes = [UInt8](data)
        if bytes.last == UInt8(ascii: "\n") { bytes.removeLast() }
        if bytes.last == UInt8(ascii: "\r") { bytes.removeLast() }
        guard bytes.count >= RegistryCredentials.minimumSecretLength else { throw Failure.tooShort(path: path, length: bytes.count) }
        self.init(secret: SecretBytes(bytes))
    }

    /// The bearer credential of `name` (a node name, or `adminName`).
    public func credential(for name: String) -> String {
        let mac = HMAC<SHA256>.authenticationCode(for: Array(name.utf8), using: key)
        return mac.map { byte in
            let digits = Array("0123456789abcdef".utf8)
            return String(decoding: [digits[Int(byte >> 4)], digits[Int(byte & 0x0F)]], as: UTF8.self)
        }.joined()
    }

    /// The admin credential.
    public var adminCredential: String { credential(for: RegistryCredentials.adminName) }

    /// True when `token` is the credential of `name`; constant time in the token's content.
    public func isValid(token: String, for name: String) -> Bool {
        let expected = Array(credential(for: name).utf8)
        let given = Array(token.utf8)
        guard expected.count == given.count else { return false }
        var diff: UInt8 = 0
        for i in expected.indices { diff |= expected[i] ^ given[i] }
        return diff == 0
    }

    public var description: String { "RegistryCredentials(<secret>)" }
}
