import Foundation

/// A fresh directory under the system temp directory, removed by `remove()`.
struct TemporaryDirectory {
    let path: String

    init() throws {
        let base = FileManager.default.temporaryDirectory.path
        path = "\(base)/keys-test-\(getpid())-\(UInt64.random(in: 0...UInt64.max))"
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: false)
    }

    func file(_ name: String) -> String { "\(path)/\(name)" }

    func remove() { try? FileManager.default.removeItem(atPath: path) }

    /// Writes in place: open with truncation, write, close (what `echo > file` does).
    func writeInPlace(_ name: String, _ text: String, mode: mode_t = 0o600) throws {
        let fd = open(file(name), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode)
        guard fd >= 0 else { throw POSIXError(POSIXErrorCode(rawValue: errno) ?? .EIO) }
        defer { close(fd) }
        try writeAll(fd, Array(text.utf8))
    }

    /// Writes a temporary file in the same directory and renames it over `name`.
    func writeByRename(_ name: String, _ text: String) throws {
        try writeInPlace(".\(name).new", text)
        guard rename(file(".\(name).new"), file(name)) == 0 else { throw POSIXError(POSIXErrorCode(rawValue: errno) ?? .EIO) }
    }

    func writeAll(_ fd: Int32, _ bytes: [UInt8]) throws {
        var done = 0
        while done < bytes.count {
            let n = bytes[done...].withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
            guard n > 0 else { throw POSIXError(POSIXErrorCode(rawValue: errno) ?? .EIO) }
            done += n
        }
    }
}

/// A Kubernetes projected volume in a directory: `NAME -> ..data/NAME`, `..data -> ..<timestamp>`.
/// `update` does what the kubelet does: a new timestamped directory, a `..data_tmp` symlink to
/// it renamed over `..data`, then the old directory removed.
struct ProjectedVolume {
    let directory: TemporaryDirectory
    let name: String
    var generation = 0

    init(in directory: TemporaryDirectory, name: String, initial text: String) throws {
        self.directory = directory
        self.name = name
        try update(text)
        guard symlink("..data/\(name)", directory.file(name)) == 0 else { throw POSIXError(.EIO) }
    }

    mutating func update(_ text: String) throws {
        generation += 1
        let old = "..2026_11_21_00_00_\(String(format: "%02d", generation - 1)).0000"
        let new = "..2026_11_21_00_00_\(String(format: "%02d", generation)).0000"
        try FileManager.default.createDirectory(atPath: directory.file(new), withIntermediateDirectories: false)
        let fd = open(directory.file("\(new)/\(name)"), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw POSIXError(.EIO) }
        try directory.writeAll(fd, Array(text.utf8))
        close(fd)
        guard symlink(new, directory.file("..data_tmp")) == 0,
              rename(directory.file("..data_tmp"), directory.file("..data")) == 0
        else { throw POSIXError(.EIO) }
        try? FileManager.default.removeItem(atPath: directory.file(old))
    }
}
