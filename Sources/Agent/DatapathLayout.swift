import Datapath
import IPsecPrimitives
import XFRM

/// Where every number the agent puts into the kernel comes from. See docs/datapath.md ("XFRM layout").
///
/// - SPI on the wire: `keyID << 16 | senderNodeID` — the sending node's identity is in the SPI, so inbound
///   SAs from different peers never collide and need no ingress mark.
/// - OUT SAs and OUT policies carry the BPF mark `0xE00 | keyID << 12 | peerNodeID << 16` (mask 0xFFFFFF00).
/// - Every object the agent creates carries `reqid` (states and templates); policies also carry the agent's
///   priority band. Nothing else is touched, flushed or deleted.
public enum DatapathLayout {
    /// The agent's reqid ("IPSA"): the ownership tag on every SA and policy template it creates.
    public static let reqid: UInt32 = 0x4950_5341
    /// OUT policies selecting marked traffic into a key's SA.
    public static let outPolicyPriority: UInt32 = 0x4950
    /// IN and FWD policies admitting traffic decrypted by the agent's SAs.
    public static let inPolicyPriority: UInt32 = 0x4950
    /// The default-drop OUT policy for marked traffic with no usable SA (never plaintext).
    public static let dropPolicyPriority: UInt32 = 0x4951
    /// Mark bits the BPF program sets on every packet it selects (and the drop policy's match).
    public static let encryptMarkMatch = XFRMMark(value: 0xE00, mask: 0xF00)
    public static let replayWindow: UInt32 = 1024

    /// SPI for traffic sent by `sender` with key `key`.
    public static func spi(key: KeyID, sender: UInt16) -> UInt32 {
        UInt32(key.rawValue) << 16 | UInt32(sender)
    }

    /// The key ID and sending node encoded in an agent SPI; nil if the SPI is not of that shape.
    public static func decode(spi: UInt32) -> (key: KeyID, sender: UInt16)? {
        guard spi >> 20 == 0, let key = KeyID(spi >> 16) else { return nil }
        return (key, UInt16(truncatingIfNeeded: spi))
    }

    /// The mark of egress packets to `peer` with `key`, as the BPF program sets it.
    public static func outMark(key: KeyID, peer: UInt16) -> XFRMMark {
        XFRMMark(value: EncryptMark.value(spi: key, nodeID: peer), mask: EncryptMark.mask)
    }

    /// Policy hash thresholds under which the kernel hashes the agent's policies instead of keeping them on its
    /// inexact lists (where each insert and delete walks the lists: quadratic over a rotation at thousands of
    /// peers). OUT policies select `any → peer pods` (local bits 0, remote bits the pod prefix length); IN and
    /// FWD select `peer pods → local pods`. Pod CIDRs are assumed the same size cluster-wide (a peer with a
    /// shorter one stays inexact: slower, never wrong). Only ever lowers `current`: more policies hashed, lookups
    /// unchanged (the kernel consults the hash and the inexact lists alike).
    public static func policyHashThresholds(
        current: XFRMPolicyHashThresholds,
        podCIDRs: [IPPrefix]
    ) -> XFRMPolicyHashThresholds {
        var wanted = current
        if let v4 = podCIDRs.filter({ $0.family == .v4 }).map(\.length).min() {
            wanted.ipv4 = .init(local: 0, remote: min(current.ipv4.remote, UInt8(v4)))
        }
        if let v6 = podCIDRs.filter({ $0.family == .v6 }).map(\.length).min() {
            wanted.ipv6 = .init(local: 0, remote: min(current.ipv6.remote, UInt8(v6)))
        }
        return wanted
    }

    /// The peer node ID in an OUT mark (`outMark`).
    public static func peerNodeID(outMark mark: XFRMMark) -> UInt16 {
        UInt16(truncatingIfNeeded: mark.value >> 16)
    }

    /// True for the SAs this agent created.
    public static func owns(_ state: XFRMState) -> Bool {
        state.reqid == reqid && decode(spi: state.spi) != nil
    }

    /// True for the policies this agent created: its priority band and (for allow policies) its reqid.
    public static func owns(_ policy: XFRMPolicy) -> Bool {
        switch policy.action {
        case .block:
            return policy.priority == dropPolicyPriority && policy.mark == encryptMarkMatch
        case .allow:
            return (policy.priority == outPolicyPriority || policy.priority == inPolicyPriority)
                && !policy.templates.isEmpty && policy.templates.allSatisfy { $0.reqid == reqid }
        }
    }
}
