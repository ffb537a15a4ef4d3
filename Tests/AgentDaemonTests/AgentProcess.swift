import Foundation
import TestSupport

/// The built `ipsec-agent` binary run as a child process, its output in a log file: how an operator runs it.
final class AgentProcess: @unchecked Sendable {
    /// `.build/<config>/ipsec-agent`, beside the test bundle.
    static var binary: String {
        let bundle = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath()
        var directory = bundle.deletingLastPathComponent()
        if directory.lastPathComponent == "MacOS" { directory = directory.deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent() }
        return directory.appendingPathComponent("ipsec-agent").path
    }

    static var available: Bool { FileManager.default.isExecutableFile(atPath: binary) }

    let process = Process()
    let logPath: String

    init(_ arguments: [String], log: String) throws {
        logPath = log
        FileManager.default.createFile(atPath: log, contents: nil)
        let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: log))
        process.executableURL = URL(fileURLWithPath: Self.binary)
        process.arguments = arguments
        process.standardOutput = handle
        process.standardError = handle
        try process.run()
    }

    var log: String { (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? "" }

    /// Waits until the log contains `text` (false after `timeout`, or when the process ended first).
    func waitForLog(_ text: String, timeout: Duration = .seconds(30)) async throws -> Bool {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            if log.contains(text) { return true }
            guard process.isRunning else { return log.contains(text) }
            try await Task.sleep(for: .milliseconds(20))
        }
        return false
    }

    /// Sends `signal` and waits up to `timeout` for the exit: (exit status, seconds taken), or nil if still running.
    func stop(signal: Int32 = SIGTERM, timeout: Duration = .seconds(10)) async throws -> (status: Int32, seconds: Double)? {
        let start = ContinuousClock.now
        kill(process.processIdentifier, signal)
        while process.isRunning && ContinuousClock.now - start < timeout {
            try await Task.sleep(for: .milliseconds(5))
        }
        guard !process.isRunning else { return nil }
        let elapsed = ContinuousClock.now - start
        return (process.terminationStatus, Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18)
    }

    /// Ends the process whatever state it is in (test clean-up).
    func kill9() {
        if process.isRunning { kill(process.processIdentifier, SIGKILL); process.waitUntilExit() }
    }
}
