/// A parsed key file: every key line in file order, and the active key.
///
/// The file may list several key lines with distinct SPIs. The LAST line is the active key; earlier
/// lines are validated like the last one (a typo anywhere rejects the file) but otherwise ignored,
/// so an operator can keep the previous line in the file while rotating.
public struct KeyFile: Hashable, Sendable, CustomStringConvertible {
    /// Where the content came from (a path, or the name given to the parser).
    public let source: String
    /// Every key line, in file order; never empty.
    public let keys: [IPsecKey]
    /// True when the file on disk grants any access to group or others (mode & 0o077 != 0).
    /// Always false for content parsed from a string.
    public let insecurePermissions: Bool

    /// The active key: the last key line.
    public var activeKey: IPsecKey { keys[keys.count - 1] }

    /// `keys` must not be empty.
    public init(source: String, keys: [IPsecKey], insecurePermissions: Bool = false) {
        precondition(!keys.isEmpty, "a key file holds at least one key")
        self.source = source
        self.keys = keys
        self.insecurePermissions = insecurePermissions
    }

    public var description: String {
        "key file \(source): active \(activeKey), \(keys.count) line(s)"
    }
}
