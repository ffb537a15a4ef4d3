#if canImport(Glibc)
    import Glibc

    /// A non-blocking inotify instance watching one directory. Owns its descriptor (closed on deinit).
    final class Inotify {
        /// One event: the watch it concerns, its mask, and the name of the entry in the directory (or "").
        struct Record: Equatable {
            let watch: Int32
            let mask: UInt32
            let name: String
        }

        /// Changes to a directory's entries and to the directory itself.
        static let directoryMask = UInt32(
            IN_CLOSE_WRITE | IN_MOVED_TO | IN_MOVED_FROM | IN_CREATE | IN_DELETE | IN_MODIFY | IN_ATTRIB
                | IN_DELETE_SELF | IN_MOVE_SELF | IN_ONLYDIR
        )

        let descriptor: Int32
        let watch: Int32

        /// Watches `directory`; throws an error naming `file` (the key file) when it cannot.
        init(directory: String, file: String) throws(KeyFileError) {
            let fd = inotify_init1(Int32(IN_NONBLOCK | IN_CLOEXEC))
            guard fd >= 0 else {
                throw KeyFileError(
                    file: file, line: nil, field: .file, expected: "an inotify instance",
                    got: String(cString: strerror(errno)))
            }
            let wd = inotify_add_watch(fd, directory, Self.directoryMask)
            guard wd >= 0 else {
                let reason = String(cString: strerror(errno))
                close(fd)
                throw KeyFileError(
                    file: file, line: nil, field: .file, expected: "a watchable directory \(directory)", got: reason)
            }
            descriptor = fd
            watch = wd
        }

        deinit { close(descriptor) }

        /// Reads every queued event without blocking (empty when none).
        func readRecords() -> [Record] {
            var records: [Record] = []
            // Room for many events; every event fits (NAME_MAX + 1 + header).
            var buffer = [UInt8](repeating: 0, count: 64 * 1024)
            while true {
                let n = buffer.withUnsafeMutableBytes { read(descriptor, $0.baseAddress, $0.count) }
                if n < 0 && errno == EINTR { continue }
                guard n > 0 else { return records }
                buffer.withUnsafeBytes { raw in
                    var offset = 0
                    let header = MemoryLayout<inotify_event>.size  // 16: wd, mask, cookie, len
                    while offset + header <= n {
                        let wd = raw.loadUnaligned(fromByteOffset: offset, as: Int32.self)
                        let mask = raw.loadUnaligned(fromByteOffset: offset + 4, as: UInt32.self)
                        let length = Int(raw.loadUnaligned(fromByteOffset: offset + 12, as: UInt32.self))
                        let nameBytes = raw[(offset + header)..<min(offset + header + length, n)].prefix { $0 != 0 }
                        records.append(Record(watch: wd, mask: mask, name: String(decoding: nameBytes, as: UTF8.self)))
                        offset += header + length
                    }
                }
            }
        }
    }
#endif
