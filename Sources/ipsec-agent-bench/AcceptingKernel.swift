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

/// `--no-kernel`: every request succeeds at once and nothing is kept (dumps are empty).
final class AcceptingKernel: XFRMKernel {
    func apply(_ requests: [XFRMRequest]) async -> [Result<Void, any Error>] {
        Array(repeating: .success(()), count: requests.count)
    }
    func ownedStates() async throws -> [XFRMState] { [] }
    func ownedPolicies() async throws -> [XFRMPolicy] { [] }
    func state(_ id: XFRMStateID) async throws -> XFRMState? { nil }
    func policy(_ id: XFRMPolicyID) async throws -> XFRMPolicy? { nil }
}
