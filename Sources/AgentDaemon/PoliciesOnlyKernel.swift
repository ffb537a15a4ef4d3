import Agent
import Synchronization
import XFRM

/// For host kernels without ESP (benchmarks and host tests): SAs live in memory, policies go to the real
/// kernel. Never used by `ipsec-agent run`.
public final class PoliciesOnlyKernel: XFRMKernel {
    private let inner: any XFRMKernel
    private let states = Mutex<[XFRMStateID: XFRMState]>([:])
    public init(_ inner: any XFRMKernel) { self.inner = inner }

    public func apply(_ requests: [XFRMRequest]) async -> [Result<Void, any Error>] {
        await withCheckedContinuation { continuation in submit(requests) { continuation.resume(returning: $0) } }
    }

    /// The in-memory SAs are stored on the inner kernel's thread, after its policies, where a real kernel would
    /// do that work (not on the caller's).
    public func submit(_ requests: [XFRMRequest], completion: @escaping @Sendable ([Result<Void, any Error>]) -> Void) {
        let positions = requests.indices.filter {
            switch requests[$0] {
            case .addState, .updateState, .deleteState: false
            default: true
            }
        }
        let forward = positions.map { requests[$0] }
        let storeStates: @Sendable ([Result<Void, any Error>]) -> Void = { [self] forwarded in
            var results = [Result<Void, any Error>](repeating: .success(()), count: requests.count)
            for (k, i) in positions.enumerated() { results[i] = forwarded[k] }
            states.withLock { s in
                for r in requests {
                    switch r {
                    case .addState(let st), .updateState(let st): s[st.id] = st
                    case .deleteState(let id): s[id] = nil
                    default: continue
                    }
                }
            }
            completion(results)
        }
        if forward.isEmpty { storeStates([]) } else { inner.submit(forward, completion: storeStates) }
    }

    public func ownedStates() async throws -> [XFRMState] { states.withLock { Array($0.values) } }
    public func ownedPolicies() async throws -> [XFRMPolicy] { try await inner.ownedPolicies() }
    public func state(_ id: XFRMStateID) async throws -> XFRMState? { states.withLock { $0[id] } }
    public func policy(_ id: XFRMPolicyID) async throws -> XFRMPolicy? { try await inner.policy(id) }
}
