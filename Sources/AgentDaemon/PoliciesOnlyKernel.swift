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
        var results = [Result<Void, any Error>?](repeating: nil, count: requests.count)
        var forward: [(Int, XFRMRequest)] = []
        states.withLock { s in
            for (i, r) in requests.enumerated() {
                switch r {
                case .addState(let st), .updateState(let st): s[st.id] = st; results[i] = .success(())
                case .deleteState(let id): s[id] = nil; results[i] = .success(())
                default: forward.append((i, r))
                }
            }
        }
        let forwarded = await inner.apply(forward.map(\.1))
        for (k, (i, _)) in forward.enumerated() { results[i] = forwarded[k] }
        return results.map { $0! }
    }
    public func ownedStates() async throws -> [XFRMState] { states.withLock { Array($0.values) } }
    public func ownedPolicies() async throws -> [XFRMPolicy] { try await inner.ownedPolicies() }
    public func state(_ id: XFRMStateID) async throws -> XFRMState? { states.withLock { $0[id] } }
    public func policy(_ id: XFRMPolicyID) async throws -> XFRMPolicy? { try await inner.policy(id) }
}

