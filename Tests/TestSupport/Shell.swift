import Foundation

/// Runs external commands (ip, tc, promtool …) for tests, each on a thread of its own: waiting for a child
/// (a ping, a compiler, the agent binary) must not hold one of the cooperative pool's two threads, or every
/// other test's server and client stall with it and time out.
public enum Shell {
    public struct Failure: Error, CustomStringConvertible {
        public let command: [String]
        public let status: Int32
        public let output: String
        public var description: String { "\(command.joined(separator: " ")) exited \(status): \(output)" }
    }

    /// Runs `args` (looked up on PATH), returns stdout+stderr; throws `Failure` on a non-zero exit.
    @discardableResult
    public static func run(_ args: String..., input: String? = nil) async throws -> String {
        try await run(args, input: input)
    }

    @discardableResult
    public static func run(_ args: [String], input: String? = nil) async throws -> String {
        let (status, output) = try await status(args, input: input)
        guard status == 0 else { throw Failure(command: args, status: status, output: output) }
        return output
    }

    /// Runs `args` and returns the exit status and combined output, without throwing on failure.
    public static func status(_ args: [String], input: String? = nil) async throws -> (Int32, String) {
        try await offThePool { try blockingStatus(args, input: input) }
    }

    /// `status`, blocking the calling thread: only for a thread that is not the cooperative pool's.
    public static func blockingStatus(_ args: [String], input: String? = nil) throws -> (Int32, String) {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        p.arguments = args
        let out = Pipe()
        p.standardOutput = out
        p.standardError = out
        let inPipe = Pipe()
        p.standardInput = inPipe
        try p.run()
        if let input { inPipe.fileHandleForWriting.write(Data(input.utf8)) }
        try inPipe.fileHandleForWriting.close()
        let data = out.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        return (p.terminationStatus, String(decoding: data, as: UTF8.self))
    }
}

/// Runs blocking work (child processes, waits) on a thread of its own, so that it does not hold one of the
/// cooperative pool's few threads: other tests' timers and continuations keep running meanwhile.
public func offThePool<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
    try await withCheckedThrowingContinuation { continuation in
        Thread { continuation.resume(with: Result { try body() }) }.start()
    }
}
