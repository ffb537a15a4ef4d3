import Agent
import Dispatch
import IPsecPrimitives
import XFRM

/// `XFRMKernel` over the netlink client. The client's calls block (briefly) in the kernel, so they run on a
/// dedicated serial queue, never on Swift's cooperative pool (two threads on two cores).
public final class XFRMClientKernel: XFRMKernel {
    private let client: XFRMClient
    private let queue = DispatchQueue(label: "ipsec-agent.xfrm")

    public init(client: XFRMClient) { self.client = client }

    private func run<T: Sendable>(_ body: @escaping @Sendable (XFRMClient) -> T) async -> T {
        await withCheckedContinuation { continuation in
            queue.async { [client] in continuation.resume(returning: body(client)) }
        }
    }

    public func apply(_ requests: [XFRMRequest]) async -> [Result<Void, any Error>] {
        await withCheckedContinuation { continuation in submit(requests) { continuation.resume(returning: $0) } }
    }

    /// Straight onto the netlink queue: the only thread hand-offs are to the queue and back to the caller.
    public func submit(_ requests: [XFRMRequest], completion: @escaping @Sendable ([Result<Void, any Error>]) -> Void) {
        queue.async { [client] in
            completion(client.perform(requests).map { result in result.mapError { XFRMClientKernel.classify($0) } })
        }
    }

    public func ownedStates() async throws -> [XFRMState] {
        AgentController.owned(
            try await run { client in Result { try client.states() } }.mapError(Self.classify).get(),
            DatapathLayout.owns)
    }

    public func ownedPolicies() async throws -> [XFRMPolicy] {
        AgentController.owned(
            try await run { client in Result { try client.policies() } }.mapError(Self.classify).get(),
            DatapathLayout.owns)
    }

    public func state(_ id: XFRMStateID) async throws -> XFRMState? {
        try await run { client in Result { try client.state(id) } }.mapError(Self.classify).get()
    }

    public func policy(_ id: XFRMPolicyID) async throws -> XFRMPolicy? {
        try await run { client in Result { try client.policy(id) } }.mapError(Self.classify).get()
    }

    /// Lowers the namespace's policy hash thresholds so the agent's policies are hashed
    /// (`DatapathLayout.policyHashThresholds`). Returns the thresholds before and after (equal: nothing to do).
    public func hashPolicies(
        podCIDRs: [IPPrefix]
    ) async throws -> (before: XFRMPolicyHashThresholds, after: XFRMPolicyHashThresholds) {
        try await run { client in
            Result { () throws(XFRMError) -> (XFRMPolicyHashThresholds, XFRMPolicyHashThresholds) in
                let current = try client.policyHashThresholds()
                let wanted = DatapathLayout.policyHashThresholds(current: current, podCIDRs: podCIDRs)
                if wanted != current { try client.setPolicyHashThresholds(wanted) }
                return (current, wanted)
            }
        }.get()
    }

    static func classify(_ error: any Error) -> XFRMKernelError {
        switch error as? XFRMError {
        case .alreadyExists?: .alreadyExists
        case .notFound?: .notFound
        default: .failed("\(error)")
        }
    }
}
