import IPsecPrimitives
#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// Writes keys in the key file grammar that `KeyFileParser` reads.
public enum KeyFileWriter {
    /// The key line for `key`. Contains the key bytes in hex: write it to a protected file only.
    public static func line(for key: IPsecKey) -> String {
        switch key.algorithm {
        case .aesGCM(_, let icv):
            "\(key.id)+ \(KeyFileParser.aeadName) \(ByteEncoding.hex(key.encryptionKey.revealed)) \(icv)"
        case .cbcHMAC(let hash, _, _):
            "\(key.id)+ hmac(\(hash)) \(ByteEncoding.hex(key.authenticationKey?.revealed ?? [])) "
                + "\(KeyFileParser.cbcName) \(ByteEncoding.hex(key.encryptionKey.revealed))"
        }
    }

    /// Replaces the file at `path` atomically with one line per key (the last is active), mode 0600.
    ///
    /// Writes a temporary file in the same directory (created 0600 by `mkstemp`), fsyncs it, renames
    /// it over `path` and fsyncs the directory: readers see the old or the new file, never a part.
    public static func write(_ keys: [IPsecKey], to path: String) throws(KeyFileError) {
        precondition(!keys.isEmpty, "a key file holds at least one key")
        let contents = Array(keys.map { line(for: $0) + "\n" }.joined().utf8)
        let directory = Self.directory(of: path)
        var template = Array("\(path).tmp-XXXXXX".utf8CString)
        let fd = template.withUnsafeMutableBufferPointer { mkstemp($0.baseAddress!) }
        guard fd >= 0 else { throw failure(path, "a writable directory", errno) }
        let temporary = String(decoding: template.dropLast().map { UInt8(bitPattern: $0) }, as: UTF8.self)
        var renamed = false
        defer { if !renamed { unlink(temporary) } }
        do {
            defer { close(fd) }
            guard fchmod(fd, 0o600) == 0 else { throw failure(temporary, "mode 0600 to be settable", errno) }
            guard writeAll(fd, contents) else { throw failure(temporary, "a writable file", errno) }
            guard fsync(fd) == 0 else { throw failure(temporary, "fsync to succeed", errno) }
        }
        guard rename(temporary, path) == 0 else { throw failure(path, "rename over the file to succeed", errno) }
        renamed = true
        let directoryFD = open(directory, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        if directoryFD >= 0 {
            _ = fsync(directoryFD)
            close(directoryFD)
        }
    }

    static func directory(of path: String) -> String {
        guard let slash = path.lastIndex(of: "/") else { return "." }
        return slash == path.startIndex ? "/" : String(path[..<slash])
    }

    static func failure(_ path: String, _ expected: String, _ code: Int32) -> KeyFileError {
        KeyFileError(file: path, line: nil, field: .file, expected: expected, got: String(cString: strerror(code)))
    }
}

/// Writes every byte to `fd`, retrying short writes and EINTR; false (errno set) on failure.
private func writeAll(_ fd: Int32, _ bytes: [UInt8]) -> Bool {
    var written = 0
    while written < bytes.count {
        let n = bytes[written...].withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
        if n < 0 {
            if errno == EINTR { continue }
            return false
        }
        written += n
    }
    return true
}
