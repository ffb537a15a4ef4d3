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

/// Measures the time the kernel adapter is busy (at least one batch submitted and not yet completed: the union
/// of the batches' intervals, since the controller queues the next batch before the previous one completes),
/// and counts dumps.
final class TimingKernel: XFRMKernel {
    private let inner: any XFRMKernel
    private let state = Mutex<(elapsed: Double, dumps: Int, outstanding: Int, busySince: ContinuousClock.Instant)>(
        (0, 0, 0, .now))
    init(_ inner: any XFRMKernel) { self.inner = inner }
    /// IPSA_BENCH_TRACE_BATCHES: `batch REQUESTS SUBMITTED COMPLETED` (CLOCK_MONOTONIC seconds) on stderr per batch,
    /// kept in memory until `flushTrace()` (after a rotation): written from the completion, the line delayed the
    /// controller's resumption (a write to the VM rig's shared directory takes ~1 ms).
    static let traceBatches = ProcessInfo.processInfo.environment["IPSA_BENCH_TRACE_BATCHES"] != nil
    private let trace = Mutex<[String]>([])

    func flushTrace() {
        let lines = trace.withLock { lines in
            defer { lines = [] }; return lines
        }
        if !lines.isEmpty { FileHandle.standardError.write(Data(lines.map { $0 + "\n" }.joined().utf8)) }
    }

    var elapsed: Double { state.withLock { $0.elapsed } }
    var dumps: Int { state.withLock { $0.dumps } }
    func reset() { state.withLock { $0.elapsed = 0 } }

    func apply(_ requests: [XFRMRequest]) async -> [Result<Void, any Error>] {
        await withCheckedContinuation { continuation in submit(requests) { continuation.resume(returning: $0) } }
    }
    func submit(_ requests: [XFRMRequest], completion: @escaping @Sendable ([Result<Void, any Error>]) -> Void) {
        let submitted = ScaleBenchmark.monotonicSeconds()
        state.withLock { s in
            if s.outstanding == 0 { s.busySince = .now }
            s.outstanding += 1
        }
        inner.submit(requests) { [self] results in
            if TimingKernel.traceBatches {
                let line = "batch \(requests.count) \(submitted) \(ScaleBenchmark.monotonicSeconds())"
                trace.withLock { $0.append(line) }
            }
            state.withLock { s in
                s.outstanding -= 1
                if s.outstanding == 0 {
                    let d = ContinuousClock.now - s.busySince
                    s.elapsed += Double(d.components.seconds) + Double(d.components.attoseconds) / 1e18
                }
            }
            completion(results)
        }
    }
    func ownedStates() async throws -> [XFRMState] {
        state.withLock { $0.dumps += 1 }
        return try await inner.ownedStates()
    }
    func ownedPolicies() async throws -> [XFRMPolicy] {
        state.withLock { $0.dumps += 1 }
        return try await inner.ownedPolicies()
    }
    func state(_ id: XFRMStateID) async throws -> XFRMState? { try await inner.state(id) }
    func policy(_ id: XFRMPolicyID) async throws -> XFRMPolicy? { try await inner.policy(id) }
}
