import Foundation
import IPsecPrimitives
import Testing

/// The cluster secret and registry credentials: regular files that only their owner can access.
@Suite struct SecretFileTests {
    static func directory() throws -> String {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("secret-file-\(getpid())-\(UInt32.random(in: 0...UInt32.max))").path
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: false)
        return path
    }

    @Test func sharedSecretIsRefusedNamingFileAndMode() throws {
        let dir = try Self.directory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let path = dir + "/secret"
        try "do-not-echo-0123456789abcdef\n".write(toFile: path, atomically: true, encoding: .utf8)
        for mode: mode_t in [0o644, 0o640, 0o604, 0o660] {
            #expect(chmod(path, mode) == 0)
            let expected = "cluster secret file \(path) has mode 0\(String(mode, radix: 8)): group or others can access it"
            do {
                _ = try SecretFile.read(path: path, role: "cluster secret file")
                Issue.record("mode \(String(mode, radix: 8)) accepted")
            } catch {
                #expect(error.description.hasPrefix(expected), "\(error)")
                #expect(!error.description.contains("do-not-echo"))
            }
            let warned = try SecretFile.read(path: path, role: "cluster secret file", shared: .warn)
            #expect(warned.warning?.hasPrefix(expected) == true)
            #expect(warned.bytes == Array("do-not-echo-0123456789abcdef\n".utf8))
        }
        for mode: mode_t in [0o600, 0o400] {
            #expect(chmod(path, mode) == 0)
            let read = try SecretFile.read(path: path, role: "cluster secret file")
            #expect(read.warning == nil)
        }
    }

    @Test func specialFilesAreRefusedWithoutBlocking() throws {
        let dir = try Self.directory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        #expect(mkfifo(dir + "/fifo", 0o600) == 0)
        #expect(throws: SecretFileError(description: "registry credential file \(dir)/fifo: is a FIFO (named pipe), not a regular file")) {
            try SecretFile.read(path: dir + "/fifo", role: "registry credential file")
        }
        #expect(throws: SecretFileError(description: "registry credential file \(dir): is a directory, not a regular file")) {
            try SecretFile.read(path: dir, role: "registry credential file")
        }
        #expect(throws: SecretFileError(description: "registry credential file \(dir)/none: cannot read it (No such file or directory)")) {
            try SecretFile.read(path: dir + "/none", role: "registry credential file")
        }
    }
}
