import Foundation
import TestSupport

/// Runs a closure on a fresh thread that has entered a network namespace, so netlink calls
/// (tc attach/detach/query, if_nametoindex) act there while the test process stays in its own.
enum NamespaceThread {
    private typealias SetNamespace = @convention(c) (Int32, Int32) -> Int32
    private static let cloneNewNet: Int32 = 0x4000_0000

    struct Failure: Error, CustomStringConvertible {
        let description: String
    }

    static func run<R: Sendable>(in namespace: NetworkNamespace, _ body: @escaping @Sendable () throws -> R) async throws -> R {
        try await withCheckedThrowingContinuation { continuation in
            let thread = Thread {
                continuation.resume(with: Result { try enterAndRun(namespace.path, body) })
            }
            thread.start()
        }
    }

    private static func enterAndRun<R>(_ path: String, _ body: () throws -> R) throws -> R {
        // glibc's setns is not exported by the Glibc module; look it up.
        guard let symbol = dlsym(nil, "setns") else { throw Failure(description: "setns not found") }
        let setns = unsafeBitCast(symbol, to: SetNamespace.self)
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw Failure(description: "open \(path): errno \(errno)") }
        defer { close(fd) }
        guard setns(fd, cloneNewNet) == 0 else { throw Failure(description: "setns \(path): errno \(errno)") }
        return try body()
    }
}
