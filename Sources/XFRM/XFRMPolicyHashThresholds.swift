import CNetlink

#if canImport(Glibc)
    import Glibc
#endif

/// The kernel's policy hash thresholds per family (`ip xfrm policy set hthresh4 LBITS RBITS`): a policy whose
/// local and remote selector prefixes are at least this long is kept in the by-destination hash table; any other
/// policy sits on the "inexact" lists, where every insert and delete walks them. Lookups consult both, so the
/// thresholds change performance, never which policy matches. The kernel default is the full address (32/128):
/// only host-to-host policies are hashed.
public struct XFRMPolicyHashThresholds: Hashable, Sendable, CustomStringConvertible {
    /// For OUT policies the local prefix is the selector's source; for IN and FWD, its destination.
    public struct Bits: Hashable, Sendable, CustomStringConvertible {
        public var local: UInt8
        public var remote: UInt8
        public init(local: UInt8, remote: UInt8) {
            self.local = local
            self.remote = remote
        }
        public var description: String { "\(local)/\(remote)" }
    }

    public var ipv4: Bits
    public var ipv6: Bits

    public init(ipv4: Bits, ipv6: Bits) {
        self.ipv4 = ipv4
        self.ipv6 = ipv6
    }

    /// The kernel's default.
    public static let kernelDefault = XFRMPolicyHashThresholds(
        ipv4: Bits(local: 32, remote: 32),
        ipv6: Bits(local: 128, remote: 128))

    public var description: String { "hthresh4 \(ipv4) hthresh6 \(ipv6)" }
}

extension XFRMClient {
    private static let spdFlags: UInt32 = 0xFFFF_FFFF

    /// The namespace's policy hash thresholds (`XFRM_MSG_GETSPDINFO`).
    public func policyHashThresholds() throws(XFRMError) -> XFRMPolicyHashThresholds {
        let answer = try exchange(
            what: "get SPD info", reply: Int(XFRM_MSG_NEWSPDINFO),
            decode: { (message) throws(XFRMError) -> XFRMPolicyHashThresholds in
                var table = try XFRMMessageDecoder.attributeTable(of: message, after: MemoryLayout<UInt32>.size)
                var result = XFRMPolicyHashThresholds.kernelDefault
                for (type, family) in [(XFRMA_SPD_IPV4_HTHRESH, 4), (XFRMA_SPD_IPV6_HTHRESH, 6)] {
                    guard let attribute = cnl_attr_get(&table, UInt16(type.rawValue)) else { continue }
                    guard mnl_attr_get_payload_len(attribute) >= MemoryLayout<xfrmu_spdhthresh>.size else {
                        throw .malformedMessage("SPD hash threshold attribute for IPv\(family) too short")
                    }
                    let raw = UnsafeRawPointer(mnl_attr_get_payload(attribute)!).loadUnaligned(
                        as: xfrmu_spdhthresh.self)
                    let bits = XFRMPolicyHashThresholds.Bits(local: raw.lbits, remote: raw.rbits)
                    if family == 4 { result.ipv4 = bits } else { result.ipv6 = bits }
                }
                return result
            }
        ) { sequence, builder throws(XFRMError) in
            try builder.begin(type: UInt16(XFRM_MSG_GETSPDINFO), flags: UInt16(NLM_F_REQUEST), sequence: sequence)
            try builder.appendHeader(Self.spdFlags)
        }
        guard let answer else { throw .malformedMessage("no SPD info in the kernel's answer") }
        return answer
    }

    /// Sets the namespace's policy hash thresholds (`XFRM_MSG_NEWSPDINFO`); the kernel rehashes its policies in
    /// the background. IPv4 bits above 32 or IPv6 bits above 128 are refused by the kernel (EINVAL).
    public func setPolicyHashThresholds(_ thresholds: XFRMPolicyHashThresholds) throws(XFRMError) {
        _ = try exchange(what: "set SPD \(thresholds)", reply: -1, decode: { (_) throws(XFRMError) -> Bool in true }) {
            sequence, builder throws(XFRMError) in
            try builder.begin(
                type: UInt16(XFRM_MSG_NEWSPDINFO), flags: UInt16(NLM_F_REQUEST | NLM_F_ACK), sequence: sequence)
            try builder.appendHeader(Self.spdFlags)
            try builder.appendAttribute(
                type: UInt16(XFRMA_SPD_IPV4_HTHRESH.rawValue),
                xfrmu_spdhthresh(lbits: thresholds.ipv4.local, rbits: thresholds.ipv4.remote))
            try builder.appendAttribute(
                type: UInt16(XFRMA_SPD_IPV6_HTHRESH.rawValue),
                xfrmu_spdhthresh(lbits: thresholds.ipv6.local, rbits: thresholds.ipv6.remote))
        }
    }
}
