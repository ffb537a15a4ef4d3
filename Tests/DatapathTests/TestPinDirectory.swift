import Foundation
@testable import Datapath

/// A pin directory of its own for one test, under /sys/fs/bpf/ipsa-test-*; `remove()` unpins and deletes it.
struct TestPinDirectory {
    let path: String

    init() {
        path = "/sys/fs/bpf/ipsa-test-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
    }

    func remove() {
        try? BPFDatapath.removePins(pinDirectory: path)
    }

    /// Runs `body` with a fresh pin directory and always removes it.
    static func with<R>(_ body: (TestPinDirectory) throws -> R) throws -> R {
        let directory = TestPinDirectory()
        defer { directory.remove() }
        return try body(directory)
    }
}
