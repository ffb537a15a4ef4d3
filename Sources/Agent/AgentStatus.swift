/// The agent's state as `ipsec-agent status` shows it (also its JSON form). Never contains key material.
public struct AgentStatus: Sendable, Codable, Equatable {
    /// One peer in `ipsec-agent status`: what it advertises and which key this node sends it with.
    public struct PeerRow: Sendable, Codable, Equatable {
        public var name: String
        public var nodeID: UInt16
        public var address: String
        /// The peer's advertised key ("it can receive N").
        public var spi: UInt8?
        /// The peer's local key ("it sends with N where allowed").
        public var encryptSpi: UInt8?
        /// The key our egress to the peer uses now: older(our key, its spi).
        public var egressSpi: UInt8?
        public var inboundKeys: [UInt8]
        public var outboundKeys: [UInt8]
        public var departing: Bool
    }

    /// The last reconcile pass: when, how long, what it repaired and how many kernel errors it met.
    public struct ReconcileSummary: Sendable, Codable, Equatable {
        public var secondsAgo: Double
        public var durationMillis: Double
        public var repairs: String
        public var errors: Int
    }

    public var node: String
    public var nodeID: UInt16
    public var underlay: String
    public var currentKey: UInt8?
    public var advertisedKey: UInt8?
    public var encryptKey: UInt8?
    public var phase: RotationPhase
    public var keysInUse: [UInt8]
    public var secondsSinceRotation: Double?
    public var registryConnected: Bool
    public var peers: [PeerRow]
    public var lastReconcile: ReconcileSummary?
    public var lastError: String?
    /// The largest inner packet the current key's SAs carry over the underlay (`ESPTunnelMTU`): the MTU pod
    /// interfaces need. Nil before a key is loaded.
    public var podMTU: Int?
    public var underlayMTU: Int?

    /// A human-readable table.
    public var text: String {
        func k(_ v: UInt8?) -> String { v.map(String.init) ?? "-" }
        var out = """
            node \(node) (id \(nodeID)) underlay \(underlay)
            key: current \(k(currentKey)), advertised \(k(advertisedKey)), encrypting \(k(encryptKey)); phase \(phase.rawValue); keys in use \(keysInUse.map(String.init).joined(separator: ","))
            registry: \(registryConnected ? "connected" : "UNREACHABLE (datapath kept as is)")

            """
        if let r = lastReconcile {
            out +=
                "last reconcile: \(String(format1: r.secondsAgo))s ago, \(String(format1: r.durationMillis)) ms, repairs: \(r.repairs), errors \(r.errors)\n"
        }
        if let e = lastError { out += "last error: \(e)\n" }
        if let m = podMTU, let u = underlayMTU { out += "pod MTU: \(m) (ESP tunnel over a \(u)-byte underlay)\n" }
        out +=
            "\n" + ["PEER", "ID", "ADDRESS", "SPI", "ENCRYPT", "EGRESS", "IN-KEYS", "OUT-KEYS"].joined(separator: "\t")
            + "\n"
        for p in peers {
            out +=
                [
                    p.name + (p.departing ? " (leaving)" : ""), String(p.nodeID), p.address, k(p.spi), k(p.encryptSpi),
                    k(p.egressSpi),
                    p.inboundKeys.map(String.init).joined(separator: ","),
                    p.outboundKeys.map(String.init).joined(separator: ","),
                ]
                .joined(separator: "\t") + "\n"
        }
        return out
    }
}

extension String {
    /// One decimal place without Foundation.
    init(format1 value: Double) {
        let tenths = Int((value * 10).rounded())
        self = "\(tenths / 10).\(abs(tenths % 10))"
    }
}
