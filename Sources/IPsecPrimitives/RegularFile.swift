#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// The bytes and permission bits of a small regular file, read without ever blocking on a special file.
///
/// Key files, the cluster secret and registry credentials are read through this type. A FIFO, socket, device
/// or directory at such a path (after following symlinks, e.g. Kubernetes' `..data` links) is refused with an
/// error naming its type, before anything could block: the path is checked with `stat`, opened with
/// `O_NONBLOCK`, and checked again on the open descriptor (so a swap between the two is caught too).
public struct RegularFile: Sendable {
    public let bytes: [UInt8]
    /// Permission bits (mode & 0o7777) of the file reached after following symlinks.
    public let mode: UInt32

    /// True when group or others have any permission on the file.
    public var accessibleByOthers: Bool { mode & 0o077 != 0 }

    /// Reads `path` (following symlinks) if it is a regular file of at most `limit` bytes.
    public static func read(path: String, limit: Int) throws(RegularFileError) -> RegularFile {
        var info = stat()
        guard stat(path, &info) == 0 else { throw .unreadable(path: path, reason: lastError()) }
        try requireRegular(info, path: path)
        let fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY)
        guard fd >= 0 else { throw .unreadable(path: path, reason: lastError()) }
        defer { close(fd) }
        guard fstat(fd, &info) == 0 else { throw .unreadable(path: path, reason: lastError()) }
        try requireRegular(info, path: path)
        guard Int(info.st_size) <= limit else { throw .tooLarge(path: path, limit: limit) }
        var bytes: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 4096)
        while true {
            let n = buffer.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, $0.count) }
            if n < 0 {
                if errno == EINTR { continue }
                throw .unreadable(path: path, reason: lastError())
            }
            if n == 0 { break }
            bytes.append(contentsOf: buffer[0..<n])
            guard bytes.count <= limit else { throw .tooLarge(path: path, limit: limit) }
        }
        return RegularFile(bytes: bytes, mode: UInt32(info.st_mode) & 0o7777)
    }

    /// The kind of file `mode` describes, in words ("a FIFO", "a directory", …).
    public static func kind(of mode: mode_t) -> String {
        switch mode & S_IFMT {
        case S_IFREG: "a regular file"
        case S_IFDIR: "a directory"
        case S_IFIFO: "a FIFO (named pipe)"
        case S_IFSOCK: "a socket"
        case S_IFCHR: "a character device"
        case S_IFBLK: "a block device"
        case S_IFLNK: "a symbolic link"
        default: "a file of unknown type"
        }
    }

    private static func requireRegular(_ info: stat, path: String) throws(RegularFileError) {
        guard info.st_mode & S_IFMT == S_IFREG else { throw .notRegular(path: path, kind: kind(of: info.st_mode)) }
    }

    private static func lastError() -> String { String(cString: strerror(errno)) }
}

/// Why `RegularFile.read` refused a path; the description names the path and the problem, never the content.
public enum RegularFileError: Error, Hashable, Sendable, CustomStringConvertible {
    case unreadable(path: String, reason: String)
    case notRegular(path: String, kind: String)
    case tooLarge(path: String, limit: Int)

    public var path: String {
        switch self {
        case .unreadable(let path, _), .notRegular(let path, _), .tooLarge(let path, _): path
        }
    }

    /// The problem without the path ("is a FIFO (named pipe), not a regular file").
    public var problem: String {
        switch self {
        case .unreadable(_, let reason): "cannot read it (\(reason))"
        case .notRegular(_, let kind): "is \(kind), not a regular file"
        case .tooLarge(_, let limit): "is larger than \(limit) bytes"
        }
    }

    public var description: String { "\(path): \(problem)" }
}
