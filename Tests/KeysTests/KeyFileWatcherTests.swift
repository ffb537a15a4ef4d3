import TestSupport
import Foundation
import IPsecPrimitives
import Testing
@testable import Keys

@Suite("Key file watcher (inotify, real temporary directories)")
struct KeyFileWatcherTests {
    static let keyA = KeyFixtures.aeadKey(id: 1, start: 0x10)
    static let keyB = KeyFixtures.aeadKey(id: 2, start: 0x20)
    static let keyC = KeyFixtures.aeadKey(id: 3, start: 0x30)
    static let bad = "2 rfc4106(gcm(aes)) 00112233 128\n"
    static let fast = KeyFileWatcher.Configuration(debounce: .milliseconds(50))

    static func text(_ key: IPsecKey) -> String { KeyFileWriter.line(for: key) + "\n" }

    static func isError(_ event: KeyFileEvent?, field: KeyFileError.Field) -> Bool {
        if case .error(let error) = event { return error.field == field }
        return false
    }

    /// Runs `replace` for: bad content, then key B, then key C; expects exactly A, error, B, C.
    func expectSequence(path: String, directory: TemporaryDirectory, configuration: KeyFileWatcher.Configuration = fast,
                        replace: (String) throws -> Void) async throws {
        let watcher = try KeyFileWatcher(path: path, configuration: configuration)
        defer { watcher.stop() }
        let collector = EventCollector()
        collector.drain(watcher.events)
        #expect(await collector.waitForEvents(1).first == .key(Self.keyA))

        try replace(Self.bad)
        let afterBad = await collector.waitForEvents(2)
        #expect(Self.isError(afterBad.dropFirst().first, field: .aeadKey), "\(afterBad)")

        try replace(Self.text(Self.keyB))
        #expect(await collector.waitForEvents(3).dropFirst(2).first == .key(Self.keyB))

        try replace(Self.text(Self.keyC))
        #expect(await collector.waitForEvents(4).dropFirst(3).first == .key(Self.keyC))

        watcher.stop()
        #expect(await collector.waitForFinish())
        // One report per replacement: nothing duplicated, nothing partial.
        #expect(collector.events.count == 4, "\(collector.events)")
    }

    @Test func writtenInPlace() async throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        try directory.writeInPlace("keys", Self.text(Self.keyA))
        try await expectSequence(path: directory.file("keys"), directory: directory) { try directory.writeInPlace("keys", $0) }
    }

    @Test func renamedOver() async throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        try directory.writeByRename("keys", Self.text(Self.keyA))
        try await expectSequence(path: directory.file("keys"), directory: directory) { try directory.writeByRename("keys", $0) }
    }

    @Test func kubernetesDataSymlinkSwap() async throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        var volume = try ProjectedVolume(in: directory, name: "keys", initial: Self.text(Self.keyA))
        try await expectSequence(path: directory.file("keys"), directory: directory) { try volume.update($0) }
    }

    @Test func writtenByKeyFileWriterWithJitter() async throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        try KeyFileWriter.write([Self.keyA], to: directory.file("keys"))
        let jittered = KeyFileWatcher.Configuration(debounce: .milliseconds(20), maximumJitter: .milliseconds(200))
        try await expectSequence(path: directory.file("keys"), directory: directory, configuration: jittered) { text in
            if let file = try? KeyFileParser().parse(text, source: "replacement") {
                try KeyFileWriter.write(file.keys, to: directory.file("keys"))
            } else {
                try directory.writeByRename("keys", text)  // the writer only writes valid keys
            }
        }
    }

    /// A writer that pauses mid-write (longer than the debounce) must not produce a report of the
    /// partial content: the watcher waits for the close.
    @Test func slowInPlaceWriteIsReadWhenComplete() async throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        try directory.writeInPlace("keys", Self.text(Self.keyA))
        // The completion timeout (the fallback for a writer that never closes) far above the pause, so that only
        // waiting for the close can pass, however slowly a loaded machine runs the test.
        let watcher = try KeyFileWatcher(
            path: directory.file("keys"), configuration: .init(debounce: .milliseconds(20), completionTimeout: .seconds(60)))
        defer { watcher.stop() }
        let collector = EventCollector()
        collector.drain(watcher.events)
        #expect(await collector.waitForEvents(1) == [.key(Self.keyA)])

        let line = Array(Self.text(Self.keyB).utf8)
        let fd = open(directory.file("keys"), O_WRONLY | O_TRUNC)
        try directory.writeAll(fd, Array(line[..<20]))
        try await Task.sleep(for: .milliseconds(300))  // the pause being tested, not a timing assertion
        try directory.writeAll(fd, Array(line[20...]))
        close(fd)
        #expect(await collector.waitForEvents(2).dropFirst().first == .key(Self.keyB))
        watcher.stop()
        #expect(await collector.waitForFinish())
        #expect(collector.events == [.key(Self.keyA), .key(Self.keyB)])
    }

    @Test func deletedThenRecreated() async throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        try directory.writeInPlace("keys", Self.text(Self.keyA))
        try directory.writeInPlace("other", "unrelated")
        let watcher = try KeyFileWatcher(path: directory.file("keys"), configuration: Self.fast)
        defer { watcher.stop() }
        let collector = EventCollector()
        collector.drain(watcher.events)
        #expect(await collector.waitForEvents(1) == [.key(Self.keyA)])
        #expect(unlink(directory.file("keys")) == 0)
        let events = await collector.waitForEvents(2)
        #expect(events.count == 2 && events[1] == .error(KeyFileError(
            file: directory.file("keys"), line: nil, field: .file, expected: "a readable regular file", got: "cannot read it (No such file or directory)")))
        try directory.writeInPlace("other", "still unrelated")  // other names in the directory are ignored
        try directory.writeByRename("keys", Self.text(Self.keyB))
        #expect(await collector.waitForEvents(3).dropFirst(2).first == .key(Self.keyB))
        watcher.stop()
        #expect(await collector.waitForFinish())
        #expect(collector.events.count == 3, "\(collector.events)")
    }

    @Test func reportsInsecurePermissions() async throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        try directory.writeInPlace("keys", Self.text(Self.keyA), mode: 0o644)
        #expect(chmod(directory.file("keys"), 0o644) == 0)
        let watcher = try KeyFileWatcher(path: directory.file("keys"), configuration: Self.fast)
        defer { watcher.stop() }
        let collector = EventCollector()
        collector.drain(watcher.events)
        #expect(await collector.waitForEvents(1) == [.key(Self.keyA)])
        #expect(watcher.insecurePermissions)
        try KeyFileWriter.write([Self.keyB], to: directory.file("keys"))  // 0600
        #expect(await collector.waitForEvents(2).dropFirst().first == .key(Self.keyB))
        #expect(!watcher.insecurePermissions)
    }

    @Test func logsIDsAndFingerprintsNeverKeyBytes() async throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        try directory.writeInPlace("keys", Self.text(Self.keyA))
        #expect(chmod(directory.file("keys"), 0o640) == 0)
        let lines = CapturingLogHandler.Lines()
        let watcher = try KeyFileWatcher(path: directory.file("keys"), configuration: Self.fast, logger: CapturingLogHandler.logger(lines))
        defer { watcher.stop() }
        let collector = EventCollector()
        collector.drain(watcher.events)
        #expect(await collector.waitForEvents(1) == [.key(Self.keyA)])
        try directory.writeByRename("keys", KeyFixtures.aeadLine(spi: 2, keyBytes: 19, start: 0x20))
        _ = await collector.waitForEvents(2)
        try directory.writeByRename("keys", Self.text(Self.keyB))
        _ = await collector.waitForEvents(3)
        watcher.stop()

        let log = lines.all
        #expect(log.contains { $0.hasPrefix("warning") && $0.contains("group or others") })
        #expect(log.contains { $0.hasPrefix("warning") && $0.contains("aead key") && $0.contains("19 bytes") })
        #expect(log.contains { $0.hasPrefix("info") && $0.contains(Self.keyB.fingerprint) })
        for secret in [Self.keyA, Self.keyB].map({ KeyFixtures.hex($0.encryptionKey.revealed) }) + [KeyFixtures.hex(KeyFixtures.bytes(19, from: 0x20))] {
            #expect(!log.contains { KeyFixtures.leaks($0, secret) }, "\(log)")
        }
    }

    @Test func cancellingTheConsumerStopsTheThread() async throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        try directory.writeInPlace("keys", Self.text(Self.keyA))
        let watcher = try KeyFileWatcher(path: directory.file("keys"), configuration: Self.fast)
        let consumer = Task {
            for await _ in watcher.events {}
        }
        consumer.cancel()
        await consumer.value
        let deadline = ContinuousClock.now + .seconds(30)
        while !watcher.threadExited && ContinuousClock.now < deadline {
            try await Task.sleep(for: .milliseconds(5))
        }
        #expect(watcher.threadExited)
        watcher.stop()  // idempotent
    }

    @Test func stopEndsTheStreamAndTheThread() async throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        try directory.writeInPlace("keys", Self.text(Self.keyA))
        let watcher = try KeyFileWatcher(path: directory.file("keys"), configuration: Self.fast)
        let collector = EventCollector()
        collector.drain(watcher.events)
        #expect(await collector.waitForEvents(1) == [.key(Self.keyA)])
        #expect(!watcher.threadExited)
        watcher.stop()  // returns at once; the thread finishes the stream and exits on its own
        #expect(await collector.waitForFinish())
        let deadline = ContinuousClock.now + .seconds(30)
        while !watcher.threadExited && ContinuousClock.now < deadline {
            try await Task.sleep(for: .milliseconds(5))
        }
        #expect(watcher.threadExited)
    }

    @Test func missingDirectoryIsAnError() throws {
        let path = "/nonexistent-\(UInt64.random(in: 0...UInt64.max))/keys"
        #expect(throws: KeyFileError(file: path, line: nil, field: .file, expected: "a watchable directory \(path.dropLast(5))", got: "No such file or directory")) {
            _ = try KeyFileWatcher(path: path)
        }
    }

    @Test func removedDirectoryEndsTheStream() async throws {
        let directory = try TemporaryDirectory()
        try directory.writeInPlace("keys", Self.text(Self.keyA))
        let watcher = try KeyFileWatcher(path: directory.file("keys"), configuration: Self.fast)
        defer { watcher.stop() }
        let collector = EventCollector()
        collector.drain(watcher.events)
        #expect(await collector.waitForEvents(1) == [.key(Self.keyA)])
        directory.remove()
        #expect(await collector.waitForFinish())
        let gone = KeyFileError(file: directory.file("keys"), line: nil, field: .file,
                                expected: "its directory to stay in place", got: "the directory was removed or moved")
        #expect(collector.events.last == .error(gone), "\(collector.events)")
        #expect(watcher.threadExited)
    }
}
