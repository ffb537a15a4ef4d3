import ArgumentParser
import Foundation
import Synchronization

/// The scale benchmark's child process: the agent alone for one size, paused before each rotation while the
/// parent measures the floor, so that floor and agent never share the machine.
extension ScaleBenchmark {
    /// Runs this benchmark again as a child process for one size, with only the agent in it. Before each rotation
    /// the child says `ready` and waits; `beforeRotation` runs (the floor), then the child goes on.
    /// `agentAlone`: with `--no-kernel --memory-map` (the agent's own work alone).
    func runAgentChild(peers n: Int, agentAlone: Bool = false, beforeRotation: () throws -> Void) throws -> Result {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/proc/self/exe")
        var arguments = [
            "scale", "--agent-only", "--peers", "\(n)", "--reconcile-passes", "\(reconcilePasses)",
            "--rotations", "\(rotationCount(peers: n))",
        ]
        if noPolicyHashing { arguments.append("--no-policy-hashing") }
        if hostPoliciesOnly { arguments.append("--host-policies-only") }
        if memoryMap || agentAlone { arguments.append("--memory-map") }
        if noKernel || agentAlone { arguments.append("--no-kernel") }
        arguments += [
            "--first-batch", "\(firstBatch)", "--batch-limit", "\(batchLimit)", "--batch-growth", "\(batchGrowth)",
            "--interleave-floor",
        ]
        process.arguments = arguments
        let output = Pipe(), input = Pipe()
        process.standardOutput = output
        process.standardInput = input
        try process.run()
        var lines: [String] = []
        var pending = Data()
        while true {
            let chunk = output.fileHandleForReading.availableData
            if chunk.isEmpty { break }  // end of file: the child is done
            pending.append(chunk)
            while let newline = pending.firstIndex(of: UInt8(ascii: "\n")) {
                let line = String(decoding: pending[pending.startIndex..<newline], as: UTF8.self)
                pending.removeSubrange(pending.startIndex...newline)
                if line == "ready" {
                    try beforeRotation()
                    QuietMachine.wait()  // the floor's namespace is torn down by kernel workers after its deletion
                    input.fileHandleForWriting.write(Data("go\n".utf8))
                } else {
                    lines.append(line)
                }
            }
        }
        process.waitUntilExit()
        guard process.terminationStatus == 0, let line = lines.last else {
            throw ValidationError("the agent child for \(n) peers failed (status \(process.terminationStatus))")
        }
        let result = try JSONDecoder().decode(Result.self, from: Data(line.utf8))
        if !agentAlone { ScaleBenchmark.lastBaseline.withLock { $0 = result.baselineRSS } }
        return result
    }
}
