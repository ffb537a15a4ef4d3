#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The bytes and permission bits of a small regular file, read in one short blocking call.
struct FileContents {
    let bytes: [UInt8]
    /// Permission bits (mode & 0o7777) of the file reached after following symlinks.
    let mode: UInt32

    /// Opens `path` (following symlinks), checks it is a regular file of at most `limit` bytes, reads it.
    static func load(path: String, limit: Int) throws(KeyFileError) -> FileContents {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else {
            throw failure(path, expected: "a readable file", errno: errno)
        }
        defer { close(fd) }
        var info = stat()
        guard fstat(fd, &info) == 0 else {
            throw failure(path, expected: "a readable file", errno: errno)
        }
        guard info.st_mode & S_IFMT == S_IFREG else {
            throw KeyFileError(file: path, line: nil, field: .file, expected: "a regular file", got: "another file type")
        }
        guard Int(info.st_size) <= limit else {
            throw KeyFileError(file: path, line: nil, field: .file, expected: "at most \(limit) bytes", got: "\(info.st_size) bytes")
        }
        var bytes: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 4096)
        while true {
            let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n < 0 {
                if errno == EINTR { continue }
                throw failure(path, expected: "a readable file", errno: errno)
            }
            if n == 0 { break }
            bytes.append(contentsOf: buffer[0..<n])
            guard bytes.count <= limit else {
                throw KeyFileError(file: path, line: nil, field: .file, expected: "at most \(limit) bytes", got: "more")
            }
        }
        return FileContents(bytes: bytes, mode: UInt32(info.st_mode) & 0o7777)
    }

    static func failure(_ path: String, expected: String, errno code: Int32) -> KeyFileError {
        KeyFileError(file: path, line: nil, field: .file, expected: expected, got: String(cString: strerror(code)))
    }
}
