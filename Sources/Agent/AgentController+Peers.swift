import Datapath
import IPsecPrimitives
import Keys
import Logging
import Registry
import XFRM

/// Peer-record intake: screening, (re)programming of changed peers, BPF encrypt entries, departures.
extension AgentController {
    // MARK: - Peers

    /// The registry's current view of the cluster (the client never reports peers as gone while disconnected).
    public func peersChanged(_ records: [NodeRecord], connected: Bool) async {
        await gate.acquire()
        defer { gate.release() }
        registryConnected = connected
        var touched: [Int] = []  // slots (an insertion appends: earlier slots stay valid)
        var seen = Set<String>()
        // In the order the registry stored them: of two records claiming the same prefix, the earlier one holds it.
        for record in records.sorted(by: { $0.revision < $1.revision }) where record.name != local.name {
            guard record.nodeID != 0,
                let underlay = local.underlay.family == .v4 ? record.ipv4 : record.ipv6
            else { continue }
            seen.insert(record.name)
            let peer = Peer(
                name: record.name, nodeID: record.nodeID, underlay: underlay, podCIDRs: record.podCIDRs,
                bootID: record.bootID, spi: record.spi, encryptSpi: record.encryptSpi,
                keyFingerprint: record.keyFingerprint, xfrmRevision: record.xfrmRevision)
            let slot = peers.slot(of: record.name)
            if let slot { peers[slot].departedAt = nil }
            let previous = slot.map { peers.entries[$0].peer }
            guard previous != peer else { continue }
            if previous?.podCIDRs != peer.podCIDRs || previous?.underlay != peer.underlay {
                if let conflict = screen.conflict(of: record, local: local, peers: peers) {
                    refuse(record, conflict)
                    continue
                }
                screen.accepted(record.name)
            }
            // Only a change other than the peer's own acknowledgement needs acknowledging: acknowledging
            // acknowledgements made every idle pair of agents republish each other forever.
            if previous.map({ !$0.differsOnlyInAcknowledgement(from: peer) }) ?? true {
                appliedRevision = max(appliedRevision, record.revision)
            }
            if let before = previous?.spi, let now = peer.spi, now.isOlder(than: before) {
                // Never expected: an agent's `spi` only moves forward. Egress to this peer follows it back.
                logger.warning(
                    "peer now advertises an older key than before",
                    metadata: [
                        "peer": "\(record.name)", "before": "\(before)", "now": "\(now)",
                        "recordRevision": "\(record.revision)",
                    ])
            }
            if previous == nil || previous?.nodeID != peer.nodeID || previous?.underlay != peer.underlay
                || previous?.bootID != peer.bootID || previous?.podCIDRs != peer.podCIDRs
            {
                var live = adoptedKeysByNode.removeValue(forKey: peer.nodeID) ?? PeerKeys()
                for key in liveLocalKeys {
                    live.inbound.insert(key)
                    live.outbound.insert(key)
                }
                if let slot {
                    peers[slot].peer = peer
                    peers[slot].keys = live
                    touched.append(slot)
                } else {
                    peers.insert(PeerEntry(peer: peer, keys: live))
                    touched.append(peers.count - 1)
                }
            } else if let slot {
                peers[slot].peer = peer
            }
        }
        if connected {
            registrySynced = true
            for i in peers.indices
            where peers.entries[i].departedAt == nil && !seen.contains(peers.entries[i].peer.name) {
                peers[i].departedAt = now()
                logger.info(
                    "peer left the registry; keeping its SAs for the grace period",
                    metadata: ["peer": "\(peers.entries[i].peer.name)"])
            }
        }
        if !touched.isEmpty { _ = await program(slots: touched) }
        updateEncryptEntries()
        await advance()
        await acknowledgeIfDue()
    }

    /// A peer record whose claims are not its own: the peer stays as it was; logged and counted once per version.
    func refuse(_ record: NodeRecord, _ conflict: ClaimConflict) {
        guard screen.firstReport(of: record) else { return }
        lastError = "peer record \(record.name) refused: \(conflict.message)"
        metrics.peerRecordRejected(reason: conflict.reason.rawValue)
        logger.error(
            "peer record refused; keeping that peer's last good state",
            metadata: [
                "peer": "\(record.name)", "recordRevision": "\(record.revision)",
                "reason": "\(conflict.reason.rawValue)",
                "problem": "\(conflict.message)",
            ])
    }

    /// Keys a new peer gets SAs for: every key this node may send or receive with.
    var liveLocalKeys: Set<KeyID> {
        var set = Set(keys.keys)
        for k in [currentKey, advertisedKey, encryptKey] { if let k { set.insert(k) } }
        return set
    }

    /// Points each peer's pod CIDRs at its advertised key in the BPF map, after its SAs exist.
    func updateEncryptEntries() {
        for i in peers.indices {
            guard var spi = peers.entries[i].peer.spi, peers.entries[i].installed != nil else { continue }
            let name = peers.entries[i].peer.name
            if fingerprintMismatch(peers.entries[i].peer) {
                // Keep egress on the newest older key both sides still share; never on the mismatched one.
                let fallback = peers.entries[i].keys.outbound.filter { $0.isOlder(than: spi) }.max()
                if !mismatchReported.contains(name) {
                    mismatchReported.insert(name)
                    metrics.fingerprintMismatch()
                    logger.error(
                        "peer advertises key \(spi) with another fingerprint; not switching to it",
                        metadata: ["peer": "\(name)"])
                }
                guard let fallback else { continue }
                spi = fallback
            } else {
                if !mismatchReported.isEmpty { mismatchReported.remove(name) }  // no hashing per peer in the usual case
            }
            let entry = PeerEncryptEntry(nodeID: peers.entries[i].peer.nodeID, peerSPI: spi)
            guard peers.entries[i].encryptEntry != entry else { continue }
            do {
                for cidr in peers.entries[i].peer.podCIDRs { try encryptMap.upsertPeer(cidr, entry) }
                peers[i].encryptEntry = entry
            } catch {
                lastError = "bpf: \(error)"
                logger.error(
                    "BPF peer update failed (reconcile will retry)", metadata: ["peer": "\(name)", "error": "\(error)"])
            }
        }
    }

    /// True when the peer advertises a key ID we hold, with a fingerprint of other key material.
    func fingerprintMismatch(_ peer: Peer) -> Bool {
        guard let spi = peer.spi, let held = fingerprints[spi], !peer.keyFingerprint.isEmpty else { return false }
        return peer.keyFingerprint != held
    }

    func removePeer(_ name: String) async {
        guard let slot = peers.slot(of: name) else { return }
        for cidr in peers.entries[slot].peer.podCIDRs { try? encryptMap.deletePeer(cidr) }
        peers[slot].encryptEntry = nil
        peers[slot].keys = PeerKeys()
        _ = await program(slots: [slot])
        peers.remove(name)
        logger.info("peer removed after its grace period", metadata: ["peer": "\(name)"])
    }
}
