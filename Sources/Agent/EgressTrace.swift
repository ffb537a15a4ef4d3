import Datapath
import IPsecPrimitives
import XFRM

/// `ipsec-agent trace --to IP`: how a packet from a local pod to `destination` leaves this node, step by step,
/// read from the live BPF map and the kernel (not from the agent's intentions).
public struct EgressTrace: Sendable, Codable, Equatable {
    /// One stage of the egress path with what was found there and whether it is as it should be.
    public struct Step: Sendable, Codable, Equatable {
        public var stage: String
        public var detail: String
        public var ok: Bool
    }
    public var destination: String
    public var verdict: String
    public var peer: String?
    public var localKey: UInt8?
    public var peerKey: UInt8?
    public var chosenKey: UInt8?
    public var spi: String?
    public var mark: String?
    public var steps: [Step]

    public var text: String {
        var out = "trace to \(destination)\n"
        for (i, s) in steps.enumerated() { out += "  \(i + 1). [\(s.ok ? "ok" : "!!")] \(s.stage): \(s.detail)\n" }
        out += "verdict: \(verdict)\n"
        return out
    }
}

extension AgentController {
    /// Explains the egress decision for a packet to `destination`.
    public func trace(
        to destination: IPAddress, kernel: any XFRMKernel, encryptMap: any EncryptMap
    ) async -> EgressTrace {
        let (local, _, peers, _) = traceInputs()
        var t = EgressTrace(destination: destination.description, verdict: "", steps: [])
        func step(_ stage: String, _ detail: String, _ ok: Bool = true) {
            t.steps.append(.init(stage: stage, detail: detail, ok: ok))
        }

        let mapLocal = try? encryptMap.localSPI()
        let entries = (try? encryptMap.peers()) ?? [:]
        // Longest prefix match, as the BPF LPM trie does.
        let match = entries.filter { $0.key.contains(destination) }.max { $0.key.length < $1.key.length }
        guard let (cidr, entry) = match else {
            step("bpf peer map", "no entry covers \(destination): the packet is not marked", false)
            t.verdict = "not encrypted by ipsec-agent (destination is not a known peer pod CIDR)"
            return t
        }
        let peer = peers.first { $0.nodeID == entry.nodeID }
        t.peer = peer?.name
        step(
            "bpf peer map",
            "\(cidr) → node \(entry.nodeID)\(peer.map { " (\($0.name))" } ?? "") advertised key \(entry.peerSPI)")
        guard let localKey = mapLocal else {
            step("bpf encrypt_state", "local key 0 (not ready): marked for the drop policy", false)
            t.verdict = "dropped by the default-drop policy (encryption not ready; never plaintext)"
            return t
        }
        t.localKey = localKey.rawValue
        t.peerKey = entry.peerSPI.rawValue
        let chosen = EncryptMark.egressSPI(local: localKey, peer: entry.peerSPI)
        t.chosenKey = chosen.rawValue
        let mark = DatapathLayout.outMark(key: chosen, peer: entry.nodeID)
        let spi = DatapathLayout.spi(key: chosen, sender: local.nodeID)
        t.mark = "0x" + String(mark.value, radix: 16)
        t.spi = "0x" + String(spi, radix: 16)
        step("key choice", "local \(localKey), peer \(entry.peerSPI) → older with wrap = \(chosen); mark \(t.mark!)")

        let any = cidr.family == .v4 ? IPPrefix("0.0.0.0/0")! : IPPrefix("::/0")!
        let policyID = XFRMPolicyID(selector: XFRMSelector(source: any, destination: cidr), direction: .out, mark: mark)
        guard let policy = try? await kernel.policy(policyID) else {
            step(
                "xfrm policy",
                "no OUT policy for \(cidr) with mark \(mark): the drop policy blocks it (XfrmOutPolBlock)", false)
            t.verdict = "dropped: missing OUT policy"
            return t
        }
        step(
            "xfrm policy",
            "OUT \(policy.selector) mark \(mark) prio \(policy.priority) → tmpl spi 0x\(String(policy.templates.first?.spi ?? 0, radix: 16))",
            policy.templates.first?.spi == spi)
        guard let peerAddress = policy.templates.first?.destination,
            let state = try? await kernel.state(XFRMStateID(destination: peerAddress, spi: spi, mark: mark))
        else {
            step("xfrm state", "no OUT SA spi \(t.spi!) (XfrmOutNoStates)", false)
            t.verdict = "dropped: missing OUT SA"
            return t
        }
        let packets = state.counters.map { ", \($0.packets) packets so far" } ?? ""
        step(
            "xfrm state",
            "ESP tunnel \(state.source) → \(state.destination) spi \(t.spi!) reqid 0x\(String(state.reqid, radix: 16))\(packets)"
        )
        t.verdict = "encrypted with key \(chosen) to \(peer?.name ?? "node \(entry.nodeID)") via \(state.destination)"
        return t
    }
}
