import IPsecPrimitives

/// The largest inner packet an ESP tunnel SA carries without fragmenting its outer packet: the MTU pod
/// interfaces (or their routes) need so that full-size packets are encrypted, not refused.
///
/// The arithmetic is the kernel's (`xfrm_state_mtu`, tunnel mode): the outer IP header, the ESP header (SPI and
/// sequence number, 8 bytes), the IV and the ICV are fixed; the encrypted part (inner packet, padding, pad
/// length and next header: 2 bytes) is a multiple of the cipher's block size rounded up to 4:
///
///     podMTU = ((underlayMTU − outer − 8 − IV − ICV) rounded down to the block) − 2
///
/// For AES-GCM-128 over a 1500-byte IPv4 underlay: (1500 − 20 − 8 − 8 − 16) & ~3 − 2 = 1446.
public struct ESPTunnelMTU: Sendable, Hashable, CustomStringConvertible {
    public let underlayMTU: Int
    public let outerFamily: IPAddress.Family
    public let algorithm: KeyAlgorithm

    public init(underlayMTU: Int, outerFamily: IPAddress.Family, algorithm: KeyAlgorithm) {
        self.underlayMTU = underlayMTU
        self.outerFamily = outerFamily
        self.algorithm = algorithm
    }

    /// The outer IP header: 20 bytes (IPv4, no options) or 40 (IPv6).
    public var outerHeaderBytes: Int { outerFamily == .v4 ? 20 : 40 }
    /// SPI and sequence number (the high half of an extended sequence number is not sent).
    public static let espHeaderBytes = 8
    /// 8 for AES-GCM (RFC 4106), 16 for AES-CBC.
    public var ivBytes: Int { algorithm.isAEAD ? 8 : 16 }
    public var icvBytes: Int { algorithm.truncationBits / 8 }
    /// The encrypted part's alignment: the cipher's block (1 for GCM, 16 for CBC) rounded up to 4.
    public var alignment: Int { algorithm.isAEAD ? 4 : 16 }

    /// The largest inner packet (0 when the underlay is too small to carry any).
    public var podMTU: Int {
        let room = underlayMTU - outerHeaderBytes - Self.espHeaderBytes - ivBytes - icvBytes
        guard room >= alignment else { return 0 }
        return room / alignment * alignment - 2
    }

    /// The arithmetic, as the agent logs it.
    public var description: String {
        let family = outerFamily == .v4 ? "IPv4" : "IPv6"
        return
            "pod MTU \(podMTU) = ((\(underlayMTU) underlay − \(outerHeaderBytes) \(family) − \(Self.espHeaderBytes) ESP − \(ivBytes) IV − \(icvBytes) ICV) aligned to \(alignment)) − 2"
    }
}

extension KeyAlgorithm {
    /// `rfc4106(gcm(aes))` (authenticated encryption in one transform).
    public var isAEAD: Bool {
        if case .aesGCM = self { return true }
        return false
    }

    /// The ICV length of an HMAC: 96 bits for SHA-1, 256 for SHA-512, 128 for SHA-256 (RFC 2404, 4868); for
    /// AES-GCM the key line's ICV.
    public var truncationBits: Int {
        switch self {
        case .aesGCM(_, let icvBits): icvBits
        case .cbcHMAC(let hash, _, _):
            switch hash {
            case "sha1": 96
            case "sha512": 256
            default: 128
            }
        }
    }
}
