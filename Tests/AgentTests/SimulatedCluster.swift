import Agent
import Datapath
import IPsecPrimitives
import Keys
import Logging
import Registry
import Synchronization
import TestSupport
import XFRM

/// The registry as the simulation sees it: records and a revision counter, with publish semantics.
final class SimRegistry: Sendable {
    struct State {
        var records: [String: NodeRecord] = [:]
        var revision: Int64 = 0
        var down = false
        /// Nodes whose publishes are stored but whose callers get an error (an acknowledgement lost on the way
        /// back, or the agent's timeout expiring just before the registry answered).
        var acksLostFor: Set<String> = []
    }
    let state = Mutex(State())
    var records: [NodeRecord] { state.withLock { Array($0.records.values) } }
    func record(_ name: String) -> NodeRecord? { state.withLock { $0.records[name] } }

    func put(_ record: NodeRecord) {
        state.withLock { s in
            s.revision += 1
            var r = record
            r.revision = s.revision
            s.records[r.name] = r
        }
    }
}

struct SimPublisher: RecordPublisher {
    struct Unreachable: Error {}
    let name: String
    let registry: SimRegistry
    let log: EffectLog

    func publish(_ update: NodeRecordUpdate) async throws -> Int64 {
        try registry.state.withLock { s in
            if s.down { throw Unreachable() }
            guard var r = s.records[name] else { throw Unreachable() }
            r.spi = update.spi
            r.encryptSpi = update.encryptSpi
            r.keyFingerprint = update.keyFingerprint
            r.xfrmRevision = update.xfrmRevision
            s.revision += 1
            r.revision = s.revision
            s.records[name] = r
            log.append(.publish(update))
            if s.acksLostFor.contains(name) { throw Unreachable() }
            return s.revision
        }
    }
}

/// One simulated node: a controller over its own fake kernel and BPF map (which survive a restart).
final class SimNode: @unchecked Sendable {  // mutated only from the test's single task
    let name: String
    let id: UInt16
    let local: LocalNode
    let log = EffectLog()
    let kernel: FakeKernel
    let map: FakeEncryptMap
    var controller: AgentController
    var keyFile: IPsecKey?
    let registry: SimRegistry
    let clock: ManualClock
    let settings: AgentController.Settings

    init(index: Int, registry: SimRegistry, clock: ManualClock, settings: AgentController.Settings) {
        name = "node-\(index)"
        id = UInt16(index)
        local = LocalNode(name: name, nodeID: UInt16(index), underlay: IPAddress("192.0.2.\(index)")!,
                          podCIDRs: [IPPrefix("10.244.\(index).0/24")!], bootID: "boot-\(index)")
        kernel = FakeKernel(log: log)
        map = FakeEncryptMap(log: log)
        self.registry = registry
        self.clock = clock
        self.settings = settings
        controller = SimNode.makeController(local, kernel, map, registry, log, clock, settings)
        registry.put(NodeRecord(name: name, nodeID: id, ipv4: local.underlay, podCIDRs: local.podCIDRs, bootID: local.bootID))
    }

    static func makeController(_ local: LocalNode, _ kernel: FakeKernel, _ map: FakeEncryptMap, _ registry: SimRegistry,
                               _ log: EffectLog, _ clock: ManualClock, _ settings: AgentController.Settings) -> AgentController {
        AgentController(local: local, kernel: kernel, encryptMap: map,
                        publisher: SimPublisher(name: local.name, registry: registry, log: log),
                        keyOperations: TestKeys.operations, settings: settings, now: { clock.now },
                        logger: Logger(label: "test", factory: { _ in SwiftLogNoOpLogHandler() }))
    }

    /// Kills the agent and starts a new one over the same kernel and pinned maps.
    func restart() async throws {
        controller = SimNode.makeController(local, kernel, map, registry, log, clock, settings)
        try await controller.adopt(ownRecord: registry.record(name))
        if let keyFile { await controller.keyFileChanged(.success(keyFile)) }
    }

    func dropKey(_ key: IPsecKey) async {
        keyFile = key
        await controller.keyFileChanged(.success(key))
    }

    func deliver() async {
        let down = registry.state.withLock { $0.down }
        await controller.peersChanged(down ? [] : registry.records, connected: !down)
    }
}

/// A cluster of simulated nodes and the zero-drop invariant over their combined datapaths.
final class SimulatedCluster: @unchecked Sendable {
    let registry = SimRegistry()
    let clock = ManualClock()
    var nodes: [SimNode] = []

    init(size: Int, settings: AgentController.Settings = AgentController.Settings()) {
        nodes = (1...size).map { SimNode(index: $0, registry: registry, clock: clock, settings: settings) }
    }

    func node(_ i: Int) -> SimNode { nodes[i - 1] }

    /// Starts every agent with `key` and delivers the registry until the cluster converges.
    func start(key: IPsecKey) async throws {
        for n in nodes {
            try await n.controller.adopt(ownRecord: registry.record(n.name))
            await n.dropKey(key)
        }
        try await settle()
    }

    /// Delivers registry state and ticks until nothing changes any more (bounded).
    func settle(rounds: Int = 12) async throws {
        for _ in 0..<rounds {
            for n in nodes { await n.deliver() }
            clock.advance(by: .seconds(1))
            for n in nodes { await n.controller.tick() }
        }
    }

    enum Egress: Equatable, CustomStringConvertible {
        case unmarked
        case encrypted(KeyID)
        case dropped(String)
        var description: String {
            switch self {
            case .unmarked: "unmarked"
            case .encrypted(let k): "key \(k)"
            case .dropped(let why): "DROP: \(why)"
            }
        }
    }

    /// What happens to a packet from a pod on `a` to a pod on `b` right now.
    func egress(from a: SimNode, to b: SimNode) -> Egress {
        let cidr = b.local.podCIDRs[0]
        guard let local = try? a.map.localSPI(), let entry = try? a.map.peers()[cidr] else { return .unmarked }
        let key = EncryptMark.egressSPI(local: local, peer: entry.peerSPI)
        let spi = DatapathLayout.spi(key: key, sender: a.id)
        let mark = DatapathLayout.outMark(key: key, peer: b.id)
        let aStates = a.kernel.states
        let aPolicies = a.kernel.policies
        let policyID = XFRMPolicyID(selector: XFRMSelector(source: IPPrefix("0.0.0.0/0")!, destination: cidr), direction: .out, mark: mark)
        guard let policy = aPolicies[policyID], policy.templates.first?.spi == spi else {
            return .dropped("\(a.name) has no OUT policy for key \(key) to \(b.name) (XfrmOutPolBlock)")
        }
        guard let out = aStates[XFRMStateID(destination: b.local.underlay, spi: spi, mark: mark)] else {
            return .dropped("\(a.name) has no OUT SA for key \(key) to \(b.name) (XfrmOutNoStates)")
        }
        guard let inbound = b.kernel.states[XFRMStateID(destination: b.local.underlay, spi: spi)] else {
            return .dropped("\(b.name) has no IN SA spi 0x\(String(spi, radix: 16)) from \(a.name) (XfrmInNoStates)")
        }
        guard inbound.algorithm == out.algorithm else {
            return .dropped("\(b.name)'s IN SA key differs from \(a.name)'s OUT SA (XfrmInStateProtoError)")
        }
        let admit = XFRMPolicyID(selector: XFRMSelector(source: a.local.podCIDRs[0], destination: b.local.podCIDRs[0]), direction: .fwd)
        guard b.kernel.policies[admit] != nil else {
            return .dropped("\(b.name) has no FWD policy for \(a.name)'s pods (XfrmInNoPols)")
        }
        return .encrypted(key)
    }

    /// Every packet that would be dropped now, for every ordered pair.
    func drops() -> [String] {
        var out: [String] = []
        for a in nodes {
            for b in nodes where a !== b {
                if case .dropped(let why) = egress(from: a, to: b) { out.append("\(a.name)→\(b.name): \(why)") }
            }
        }
        return out
    }

    /// True when every pair encrypts with `key` and each node holds exactly one key per peer.
    func converged(on key: KeyID) async -> Bool {
        for a in nodes {
            for b in nodes where a !== b && egress(from: a, to: b) != .encrypted(key) { return false }
            let status = await a.controller.status()
            guard status.phase == .idle, status.keysInUse == [key.rawValue] else { return false }
            for p in status.peers where p.inboundKeys != [key.rawValue] || p.outboundKeys != [key.rawValue] { return false }
        }
        return true
    }
}
