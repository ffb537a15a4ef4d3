/// A file that holds a secret: the cluster secret, a registry credential, a TLS private key.
///
/// It must be a regular file (see `RegularFile`) that neither group nor others can access, since whoever reads
/// it can act as its owner. With `.warnIfShared` an accessible file is read anyway and the caller gets the
/// warning to log; the default refuses it. Messages name the file and its mode, never its content.
public enum SecretFile {
    /// What to do with a secret file that group or others can read: refuse it (default) or only warn.
    public enum SharedPolicy: Sendable { case refuse, warn }

    /// Reads `path`; `role` names the file in messages ("cluster secret file", "registry credential file").
    public static func read(
        path: String, role: String, shared: SharedPolicy = .refuse,
        limit: Int = 65_536
    ) throws(SecretFileError) -> (bytes: [UInt8], warning: String?) {
        let file: RegularFile
        do {
            file = try RegularFile.read(path: path, limit: limit)
        } catch {
            throw SecretFileError(description: "\(role) \(path): \(error.problem)")
        }
        guard file.accessibleByOthers else { return (file.bytes, nil) }
        let mode = "0" + String(file.mode, radix: 8)
        let problem = "\(role) \(path) has mode \(mode): group or others can access it; run chmod 600 on it"
        switch shared {
        case .refuse:
            throw SecretFileError(description: problem + " (or pass --insecure-file-permissions to only warn)")
        case .warn: return (file.bytes, problem)
        }
    }
}

/// Why a secret file could not be read; names the file and its mode or type, never its content.
public struct SecretFileError: Error, Sendable, Equatable, CustomStringConvertible {
    public var description: String
    public init(description: String) { self.description = description }
}
