import IPsecPrimitives
import Keys
import XFRM

/// Derives the key of one directional SA; the production implementation is HKDF (`KeyDerivation`).
public typealias PairKeyDerivation =
    @Sendable (
        _ key: IPsecKey, _ source: IPAddress, _ destination: IPAddress,
        _ sourceBootID: String, _ destinationBootID: String
    ) -> PairKey

/// The XFRM objects the agent wants in the kernel: a pure function of the local node, its peers, the key
/// generations live per peer, and the key material at hand. See docs/datapath.md ("XFRM layout").
public struct DesiredState: Sendable, Equatable {
    public var states: [XFRMStateID: XFRMState] = [:]
    /// SAs that are still live but whose key material the agent no longer has (adopted after a restart, the key
    /// file already moved on): kept as they are in the kernel, never re-created, never deleted by reconcile.
    public var keptStates: Set<XFRMStateID> = []
    public var policies: [XFRMPolicyID: XFRMPolicy] = [:]

    public init() {}

    /// - Parameter includeDropPolicies: false for one peer's objects alone (the drop policies are global).
    public init(
        local: LocalNode, peers: some Collection<Peer>, peerKeys: [String: PeerKeys],
        keys: [KeyID: IPsecKey], derive: PairKeyDerivation, includeDropPolicies: Bool = true
    ) {
        self.init(local: local, peers: peers, peerKeys: peerKeys, keys: keys, includeDropPolicies: includeDropPolicies)
        {
            key, _, source, destination, sourceBoot, destinationBoot in
            derive(key, source, destination, sourceBoot, destinationBoot).xfrmAlgorithm
        }
    }

    /// The transform of one SA: derived from `key` for the pair, or reused (`DesiredStateCache`).
    typealias AlgorithmSource = (
        _ key: IPsecKey, _ spi: UInt32, _ source: IPAddress, _ destination: IPAddress,
        _ sourceBootID: String, _ destinationBootID: String
    ) -> XFRMAlgorithm

    init(
        local: LocalNode, peers: some Collection<Peer>, peerKeys: [String: PeerKeys], keys: [KeyID: IPsecKey],
        includeDropPolicies: Bool, algorithm: AlgorithmSource
    ) {
        if includeDropPolicies { policies = DesiredState.dropPolicies }
        for peer in peers {
            guard let live = peerKeys[peer.name] else { continue }
            DesiredState.build(into: &self, local: local, peer: peer, live: live, keys: keys, algorithm: algorithm)
        }
    }

    /// Whether a peer gets any objects: a node ID, an underlay address of our family, and a live key.
    static func hasObjects(local: LocalNode, peer: Peer, live: PeerKeys) -> Bool {
        peer.nodeID != 0 && peer.underlay.family == local.underlay.family && !live.isEmpty
    }

    /// One peer's objects into a `DesiredState`: OUT objects per outbound key, IN SAs per inbound key, then the
    /// admission policies. `PeerObjects` builds the same objects, grouped, in the same order.
    static func build(
        into sink: inout some DesiredObjectSink, local: LocalNode, peer: Peer, live: PeerKeys,
        keys: [KeyID: IPsecKey], algorithm: AlgorithmSource
    ) {
        guard hasObjects(local: local, peer: peer, live: live) else { return }
        for key in live.outbound {
            addOutbound(into: &sink, key: key, local: local, peer: peer, keys: keys, algorithm: algorithm)
        }
        for key in live.inbound {
            addInbound(into: &sink, key: key, local: local, peer: peer, keys: keys, algorithm: algorithm)
        }
        if !live.inbound.isEmpty { addAdmission(into: &sink, local: local, peer: peer) }
    }

    static let anyV4 = IPPrefix("0.0.0.0/0")!
    static let anyV6 = IPPrefix("::/0")!

    /// The global default-drop policies: marked traffic with no usable SA is blocked per family, never sent in
    /// plaintext.
    public static let dropPolicies: [XFRMPolicyID: XFRMPolicy] = {
        var out: [XFRMPolicyID: XFRMPolicy] = [:]
        for any in [IPPrefix("0.0.0.0/0")!, IPPrefix("::/0")!] {
            let p = XFRMPolicy(
                selector: XFRMSelector(source: any, destination: any), direction: .out,
                priority: DatapathLayout.dropPolicyPriority, action: .block,
                mark: DatapathLayout.encryptMarkMatch)
            out[p.id] = p
        }
        return out
    }()

    static func addOutbound(
        into sink: inout some DesiredObjectSink, key: KeyID, local: LocalNode, peer: Peer,
        keys: [KeyID: IPsecKey], algorithm: AlgorithmSource
    ) {
        let spi = DatapathLayout.spi(key: key, sender: local.nodeID)
        let mark = DatapathLayout.outMark(key: key, peer: peer.nodeID)
        let id = XFRMStateID(destination: peer.underlay, spi: spi, mark: mark)
        if let material = keys[key] {
            let transform = algorithm(material, spi, local.underlay, peer.underlay, local.bootID, peer.bootID)
            sink.add(
                XFRMState(
                    source: local.underlay, destination: peer.underlay, spi: spi, mode: .tunnel,
                    reqid: DatapathLayout.reqid, mark: mark, algorithm: transform,
                    replayWindow: DatapathLayout.replayWindow, esn: true))
        } else {
            sink.keep(id)
        }
        // One template array shared by the peer's OUT policies (copy-on-write: no allocation per policy).
        let templates = [
            XFRMTemplate(
                source: local.underlay, destination: peer.underlay, spi: spi,
                reqid: DatapathLayout.reqid, mode: .tunnel)
        ]
        for cidr in peer.podCIDRs {
            let any = cidr.family == .v4 ? DesiredState.anyV4 : DesiredState.anyV6
            sink.add(
                XFRMPolicy(
                    selector: XFRMSelector(source: any, destination: cidr), direction: .out,
                    priority: DatapathLayout.outPolicyPriority, action: .allow, mark: mark,
                    templates: templates))
        }
    }

    static func addInbound(
        into sink: inout some DesiredObjectSink, key: KeyID, local: LocalNode, peer: Peer,
        keys: [KeyID: IPsecKey], algorithm: AlgorithmSource
    ) {
        let spi = DatapathLayout.spi(key: key, sender: peer.nodeID)
        let id = XFRMStateID(destination: local.underlay, spi: spi)
        guard let material = keys[key] else {
            sink.keep(id)
            return
        }
        let transform = algorithm(material, spi, peer.underlay, local.underlay, peer.bootID, local.bootID)
        sink.add(
            XFRMState(
                source: peer.underlay, destination: local.underlay, spi: spi, mode: .tunnel,
                reqid: DatapathLayout.reqid, algorithm: transform,
                replayWindow: DatapathLayout.replayWindow, esn: true))
    }

    /// IN and FWD policies: traffic from the peer's pods to ours must arrive through the agent's SAs.
    static func addAdmission(into sink: inout some DesiredObjectSink, local: LocalNode, peer: Peer) {
        let templates = [
            XFRMTemplate(
                source: peer.underlay, destination: local.underlay, spi: 0,
                reqid: DatapathLayout.reqid, mode: .tunnel)
        ]
        for theirs in peer.podCIDRs {
            for ours in local.podCIDRs where ours.family == theirs.family {
                for direction in [XFRMPolicyDirection.in, .fwd] {
                    sink.add(
                        XFRMPolicy(
                            selector: XFRMSelector(source: theirs, destination: ours), direction: direction,
                            priority: DatapathLayout.inPolicyPriority, action: .allow, templates: templates))
                }
            }
        }
    }
}

/// Where `DesiredState.build` puts objects; a later object with the identity of an earlier one replaces it.
protocol DesiredObjectSink {
    mutating func add(_ state: XFRMState)
    mutating func keep(_ id: XFRMStateID)
    mutating func add(_ policy: XFRMPolicy)
}

extension DesiredState: DesiredObjectSink {
    mutating func add(_ state: XFRMState) { states[state.id] = state }
    mutating func keep(_ id: XFRMStateID) { keptStates.insert(id) }
    mutating func add(_ policy: XFRMPolicy) { policies[policy.id] = policy }
}

extension PairKey {
    /// The kernel transform for this pair key.
    public var xfrmAlgorithm: XFRMAlgorithm {
        switch algorithm {
        case .aesGCM(_, let icvBits):
            return .aead(name: "rfc4106(gcm(aes))", key: encryptionKey, icvBits: icvBits)
        case .cbcHMAC(let hash, _, _):
            return .authEncrypt(
                authName: "hmac(\(hash))", authKey: authenticationKey ?? SecretBytes([]),
                truncationBits: algorithm.truncationBits, cryptName: "cbc(aes)", cryptKey: encryptionKey)
        }
    }
}
