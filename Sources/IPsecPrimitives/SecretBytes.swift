/// Key material. Its description, debug description and reflection never show the bytes, so a secret
/// cannot leak through string interpolation, `print`, `dump` or a log line.
public struct SecretBytes: Hashable, Sendable, CustomStringConvertible, CustomDebugStringConvertible, CustomReflectable
{
    private let storage: [UInt8]

    public init(_ bytes: some Sequence<UInt8>) { storage = Array(bytes) }

    public var count: Int { storage.count }

    /// Gives scoped access to the bytes, for the code that hands them to the kernel or a KDF.
    public func withUnsafeBytes<R>(_ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
        try storage.withUnsafeBytes(body)
    }

    /// A copy of the bytes, for derivation code. Never log the result.
    public var revealed: [UInt8] { storage }

    public var description: String { "<secret \(storage.count) bytes>" }
    public var debugDescription: String { description }
    public var customMirror: Mirror { Mirror(self, children: ["count": storage.count]) }

    /// Constant-time comparison.
    public static func == (lhs: SecretBytes, rhs: SecretBytes) -> Bool {
        guard lhs.storage.count == rhs.storage.count else { return false }
        return lhs.storage.withUnsafeBufferPointer { a in
            rhs.storage.withUnsafeBufferPointer { b in
                // One buffer (a shared copy): says nothing of the bytes.
                if a.baseAddress == b.baseAddress { return true }
                var diff: UInt8 = 0
                for i in 0..<a.count { diff |= a[i] ^ b[i] }
                return diff == 0
            }
        }
    }

    public func hash(into hasher: inout Hasher) { hasher.combine(storage.count) }
}
