import Datapath
import IPsecPrimitives
import Keys
import Logging
import Registry
import XFRM

/// Snapshots for the admin endpoint: status, readiness, trace inputs, owned-object counts.
extension AgentController {
    // MARK: - Status

    public func status() -> AgentStatus {
        let t = now()
        return AgentStatus(
            node: local.name, nodeID: local.nodeID, underlay: local.underlay.description,
            currentKey: currentKey?.rawValue, advertisedKey: advertisedKey?.rawValue, encryptKey: encryptKey?.rawValue,
            phase: phase,
            keysInUse: Set(peers.entries.flatMap { $0.keys.all }).union(currentKey.map { [$0] } ?? [])
                .map(\.rawValue).sorted(),
            secondsSinceRotation: lastRotationCompletedAt.map { Self.seconds(t - $0) },
            registryConnected: registryConnected,
            peers: peers.entries.sorted { $0.peer.name < $1.peer.name }.map { entry in
                let peer = entry.peer, live = entry.keys
                let egress: UInt8? =
                    switch (encryptKey, entry.encryptEntry?.peerSPI) {
                    case (let l?, let p?): EncryptMark.egressSPI(local: l, peer: p).rawValue
                    default: nil
                    }
                return AgentStatus.PeerRow(
                    name: peer.name, nodeID: peer.nodeID, address: peer.underlay.description, spi: peer.spi?.rawValue,
                    encryptSpi: peer.encryptSpi?.rawValue, egressSpi: egress,
                    inboundKeys: live.inbound.map(\.rawValue).sorted(),
                    outboundKeys: live.outbound.map(\.rawValue).sorted(),
                    departing: entry.departedAt != nil)
            },
            lastReconcile: lastReconcile.map {
                AgentStatus.ReconcileSummary(
                    secondsAgo: Self.seconds(t - $0.finishedAt), durationMillis: Self.seconds($0.duration) * 1000,
                    repairs: $0.summary, errors: $0.errors)
            },
            lastError: lastError, podMTU: tunnelMTU?.podMTU, underlayMTU: settings.underlayMTU)
    }

    /// The ESP tunnel MTU of the current key's SAs over this node's underlay (nil before a key is loaded).
    public var tunnelMTU: ESPTunnelMTU? {
        currentKey.flatMap { keys[$0] }.map {
            ESPTunnelMTU(underlayMTU: settings.underlayMTU, outerFamily: local.underlay.family, algorithm: $0.algorithm)
        }
    }

    /// Ready: the first full programming and advertisement are done and XFRM programming currently succeeds.
    public func isReady() -> Bool {
        advertisedKey != nil && encryptKey != nil && xfrmHealthy
    }

    /// The peers and key state for `trace`.
    public func traceInputs() -> (
        local: LocalNode, encryptKey: KeyID?, peers: [Peer], entries: [String: PeerEncryptEntry]
    ) {
        (
            local, encryptKey, peers.entries.map(\.peer),
            Dictionary(uniqueKeysWithValues: peers.entries.compactMap { e in e.encryptEntry.map { (e.peer.name, $0) } })
        )
    }

    /// Owned objects by kind and direction from the agent's own model — no kernel dump (for metrics).
    public func ownedObjectCounts() -> (statesIn: Int, statesOut: Int, policies: [String: Int]) {
        var statesIn = 0, statesOut = 0
        var policies: [String: Int] = [:]
        var byDirection: [XFRMPolicyDirection: Int] = [:]
        for entry in peers.entries {
            guard let model = entry.installed else { continue }
            model.forEachState { if $0.destination == local.underlay { statesIn += 1 } else { statesOut += 1 } }
            model.forEachPolicy { byDirection[$0.direction, default: 0] += 1 }
        }
        for (direction, count) in byDirection { policies["\(direction)", default: 0] += count }
        policies["out", default: 0] += installedGlobal.policies.count
        return (statesIn, statesOut, policies)
    }

    static func seconds(_ d: Duration) -> Double {
        Double(d.components.seconds) + Double(d.components.attoseconds) / 1e18
    }
}
