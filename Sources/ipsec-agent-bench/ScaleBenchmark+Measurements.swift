import Agent
import AgentDaemon
import ArgumentParser
import Datapath
import Foundation
import IPsecPrimitives
import Keys
import Logging
import Prometheus
import Registry
import Synchronization
import XFRM

/// The scale benchmark's probes of the process (RSS, CPU, monotonic time, traces) and the kernel floor.
extension ScaleBenchmark {
    /// The process's peak resident set (`VmHWM`: per address space, so a fresh exec starts from zero, unlike
    /// `getrusage`'s `ru_maxrss`, which survives `execve`).
    static func peakRSSMegabytes() -> Double {
        guard let status = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8),
            let line = status.split(separator: "\n").first(where: { $0.hasPrefix("VmHWM:") }),
            let kb = Double(line.split(separator: " ").dropFirst().first ?? "")
        else { return .nan }
        return kb / 1024
    }

    static func monotonicSeconds() -> Double {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
    }

    /// With IPSA_BENCH_ROTATION_WINDOWS set: `rotation-window START END` (CLOCK_MONOTONIC seconds) on stderr for
    /// each rotation, and `floor-window START END` for each floor's timed batch, so a `perf record -k
    /// CLOCK_MONOTONIC` profile can be cut down to the rotations and to the floors alone.
    static func traceWindow(_ label: String = "rotation-window", from start: Double) {
        guard ProcessInfo.processInfo.environment["IPSA_BENCH_ROTATION_WINDOWS"] != nil else { return }
        FileHandle.standardError.write(Data("\(label) \(start) \(monotonicSeconds())\n".utf8))
    }

    /// With IPSA_BENCH_TRACE_RSS set: current and peak RSS after each phase, on stderr.
    static func traceRSS(_ phase: String) {
        guard ProcessInfo.processInfo.environment["IPSA_BENCH_TRACE_RSS"] != nil,
            let status = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8)
        else { return }
        let fields = status.split(separator: "\n").filter { $0.hasPrefix("VmRSS:") || $0.hasPrefix("VmHWM:") }
        FileHandle.standardError.write(Data("\(phase): \(fields.joined(separator: " "))\n".utf8))
        if let symbol = dlsym(UnsafeMutableRawPointer(bitPattern: 0), "malloc_stats") {
            unsafeBitCast(symbol, to: (@convention(c) () -> Void).self)()  // glibc: per-arena totals on stderr
        }
    }

    struct Result: Codable {
        var initial = 0.0, rotation = 0.0, rotationKernel = 0.0, floor = 0.0, reclaim = 0.0, reconcile = 0.0
        var roundRotations: [Double] = [], roundXFRM: [Double] = []
        var rotationCPU = 0.0, rotationXFRM = 0.0, rotationAdvertiseAndSwitch = 0.0, rotationRest = 0.0
        var scrape = 0.0
        var scrapeDumps = 0
        var objects = 0
        var peakRSS = 0.0, baselineRSS = 0.0
        var policyDump = 0.0, stateDump = 0.0, mapRead = 0.0
        var reconcileCPU = 0.0
    }

    /// One rotation round: key-file event to BPF switch, its phases (from the publishes' times), the time the
    /// kernel adapter was busy (overlaps the agent's own work: batches are pipelined), and the reclaim after.
    struct Rotation {
        var total: Double, kernel: Double, cpu: Double
        var xfrm = 0.0, advertiseAndSwitch = 0.0, rest = 0.0, reclaim = 0.0
    }

    /// CPU time of the whole process (all threads, user + system): unlike wall time, not inflated by other
    /// processes sharing the cores.
    static func processCPUSeconds() -> Double {
        var ts = timespec()
        clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts)
        return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
    }

    static let local = LocalNode(
        name: "node-1", nodeID: 1, underlay: IPAddress("100.64.0.1")!,
        podCIDRs: [IPPrefix("10.0.0.0/24")!], bootID: "bench-boot-1")

    /// The floor: the XFRM client alone installing the rotation's new-key objects in one batch, into a namespace
    /// that holds the same old-key objects.
    func measureFloor(peers n: Int) throws -> Double {
        let nsFloor = try BenchNamespace("ipsa-scale-f")
        defer { nsFloor.destroy() }
        let clock = ContinuousClock()
        let local = Self.local
        let records = Self.records(n)
        let key1 = BenchKeys.key(1), key2 = BenchKeys.key(2)
        let floorClient = try XFRMClient(networkNamespacePath: nsFloor.path)
        if !noPolicyHashing {  // the same kernel settings as the agent's namespace
            try floorClient.setPolicyHashThresholds(
                DatapathLayout.policyHashThresholds(
                    current: try floorClient.policyHashThresholds(), podCIDRs: local.podCIDRs))
        }
        let peersModel = records.map { r in
            Peer(name: r.name, nodeID: r.nodeID, underlay: r.ipv4!, podCIDRs: r.podCIDRs, bootID: r.bootID)
        }
        func objects(_ keys: KeyIDSet) -> DesiredState {
            let live = Dictionary(
                uniqueKeysWithValues: records.map { ($0.name, PeerKeys(inbound: keys, outbound: keys)) })
            return DesiredState(
                local: local, peers: peersModel, peerKeys: live,
                keys: [KeyID(1)!: key1, KeyID(2)!: key2], derive: KeyOperations.standard.derive)
        }
        let old = objects([KeyID(1)!])
        let both = objects([KeyID(1)!, KeyID(2)!])
        let oldRequests = XFRMDiff(desired: old, actualStates: [], actualPolicies: []).installRequests
        let newRequests = XFRMDiff(desired: both, actualStates: old.states.values, actualPolicies: old.policies.values)
            .installRequests
        let floorRequests =
            hostPoliciesOnly ? newRequests.filter { if case .addState = $0 { false } else { true } } : newRequests
        _ = floorClient.perform(
            hostPoliciesOnly ? oldRequests.filter { if case .addState = $0 { false } else { true } } : oldRequests)
        // As before each rotation: the timed batch starts on a quiet machine, not hot from the install.
        QuietMachine.wait()
        let window = Self.monotonicSeconds()
        let t = clock.now
        let floorResults = floorClient.perform(floorRequests)
        let floor = seconds(clock.now - t)
        Self.traceWindow("floor-window", from: window)
        if let failure = floorResults.first(where: { if case .failure = $0 { true } else { false } }) {
            throw ValidationError("floor batch failed: \(failure)")
        }
        return floor
    }
}
