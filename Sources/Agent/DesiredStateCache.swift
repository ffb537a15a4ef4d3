import IPsecPrimitives
import Keys
import XFRM

/// Memoizes the desired state per peer, and indexes it so reconcile can compare the kernel's objects with it
/// without a merged copy of every object.
///
/// A peer's objects are a pure function of the local node, the peer's identity (node ID, underlay, pod CIDRs,
/// boot ID), the key generations live with it and the key material held. Acknowledgements and advertisements
/// change a peer's record but none of these, so a steady reconcile pass recomputes nothing. When only a peer's live
/// keys changed (a rotation step: a key added or reclaimed), its objects are patched: the objects of the keys that
/// went are dropped and only those of the keys that came are built, so a rotation derives (HKDF) only the new key's
/// pair keys. Otherwise (identity, pod CIDRs or key material changed) they are rebuilt, reusing the transforms of
/// SAs whose key material and pair did not change; no separate cache of pair keys is kept. The owner of a kernel
/// object follows from the layout (docs/datapath.md): an OUT SA or OUT policy names the peer's node ID in its
/// mark, an IN SA in its SPI, an IN or FWD policy selects the peer's pod CIDR as source.
struct DesiredStateCache {
    /// What one peer's objects depend on, besides the local node and the keys (checked for the whole cache).
    fileprivate struct PeerInputs {
        var nodeID: UInt16
        var underlay: IPAddress
        var podCIDRs: [IPPrefix]
        var bootID: String
        var live: PeerKeys
        /// `materialEpoch` when computed: material changed after it makes the entry stale.
        var stamp: UInt64
    }

    /// A peer's objects and what they were computed from.
    fileprivate struct Entry {
        var inputs: PeerInputs
        var objects: PeerObjects
    }

    /// Each peer's entry, as last computed (after `index`: exactly the peers passed in). One table, so a peer
    /// costs one hashed look-up per pass.
    private var entries: [String: Entry] = [:]
    /// Each peer's objects, by name (a new dictionary sharing the table's models: for tests).
    var peerStates: [String: PeerObjects] { entries.mapValues(\.objects) }
    /// Possible owners by node ID and by pod CIDR. Usually one name; two while a departed peer's node ID or pod
    /// CIDR is already another peer's.
    private var namesByNodeID: [UInt16: [String]] = [:]
    private var namesByCIDR: [IPPrefix: [String]] = [:]
    private var local: LocalNode?
    /// The key material the entries were computed with, and when (in `materialEpoch`) each key ID's last changed.
    private var materials: [KeyID: IPsecKey] = [:]
    /// Indexed by key ID (1–15): read for every live key of every peer a pass visits.
    private var materialChangedAt = [UInt64](repeating: 0, count: 16)
    private var materialEpoch: UInt64 = 0

    /// Recomputations since creation (for tests: a steady pass must not recompute anything).
    private(set) var misses = 0

    /// Drops everything when the local node changed; notes which key IDs' material changed since the last call.
    /// Called once per pass or batch (`index`, or before `preparedState`): comparing the node and the keys per peer
    /// cost more than the rest of a steady look-up.
    mutating func prepare(local: LocalNode, keys: [KeyID: IPsecKey]) {
        if local != self.local {
            self.local = local
            entries.removeAll(keepingCapacity: true)
            namesByNodeID.removeAll(keepingCapacity: true)
            namesByCIDR.removeAll(keepingCapacity: true)
        }
        guard keys != materials else { return }  // a few keys: cheap to compare
        for (id, key) in keys where materials[id] != key {
            materialEpoch += 1
            materialChangedAt[Int(id.rawValue)] = materialEpoch
        }
        for id in materials.keys where keys[id] == nil {
            materialEpoch += 1
            materialChangedAt[Int(id.rawValue)] = materialEpoch
        }
        materials = keys
    }

    /// Whether no live key's material changed after the entry was computed.
    private static func isCurrent(_ entry: PeerInputs, changedAt: [UInt64]) -> Bool {
        !entry.live.inbound.contains { changedAt[Int($0.rawValue)] > entry.stamp }
            && !entry.live.outbound.contains { changedAt[Int($0.rawValue)] > entry.stamp }
    }

    /// One peer's objects (drop policies excluded).
    mutating func state(
        for peer: Peer, live: PeerKeys, local: LocalNode, keys: [KeyID: IPsecKey],
        derive: PairKeyDerivation
    ) -> PeerObjects {
        prepare(local: local, keys: keys)
        return preparedState(for: peer, live: live, local: local, keys: keys, derive: derive)
    }

    /// `state(for:)` after `prepare` with the same local node and keys (a batch of peers prepares once).
    mutating func preparedState(
        for peer: Peer, live: PeerKeys, local: LocalNode, keys: [KeyID: IPsecKey],
        derive: PairKeyDerivation
    ) -> PeerObjects {
        assert(local == self.local && keys == materials, "prepare(local:keys:) first")
        let slot = entries.index(forKey: peer.name)
        if let slot {
            let changedAt = materialChangedAt, epoch = materialEpoch
            if let (objects, patched) = Self.refresh(
                &entries.values[slot], peer: peer, live: live, local: local,
                keys: keys, changedAt: changedAt, epoch: epoch, derive: derive)
            {
                if patched { misses += 1 }
                return objects
            }
        }
        let now = PeerInputs(
            nodeID: peer.nodeID, underlay: peer.underlay, podCIDRs: peer.podCIDRs,
            bootID: peer.bootID, live: live, stamp: materialEpoch)
        // Rebuilt: a new peer, or its identity, pod CIDRs or key material changed.
        let previous = slot.map { entries.values[$0] }
        misses += 1
        let sameIdentity =
            previous.map {
                $0.inputs.nodeID == peer.nodeID && $0.inputs.underlay == peer.underlay
                    && $0.inputs.bootID == peer.bootID
            } ?? false
        // Transforms to reuse, by SPI (key ID and sender: one per direction), when the pair is the same and the
        // key's material has not changed since they were derived. A handful per peer: searched linearly.
        var reusable: [(spi: UInt32, algorithm: XFRMAlgorithm)] = []
        if sameIdentity, let previous {
            for state in previous.objects.states {
                guard let key = DatapathLayout.decode(spi: state.spi)?.key,
                    materialChangedAt[Int(key.rawValue)] <= previous.inputs.stamp
                else { continue }
                reusable.append((state.spi, state.algorithm))
            }
        }
        let objects = PeerObjects(local: local, peer: peer, live: live, keys: keys) {
            key, spi, source, destination, sourceBoot, destinationBoot in
            reusable.first { $0.spi == spi }?.algorithm
                ?? derive(key, source, destination, sourceBoot, destinationBoot).xfrmAlgorithm
        }
        let entry = Entry(inputs: now, objects: objects)
        if let slot, let previous, previous.inputs.nodeID == peer.nodeID, previous.inputs.podCIDRs == peer.podCIDRs {
            entries.values[slot] = entry  // the owner indexes change only with the node ID or the pod CIDRs
        } else {
            if let previous { forgetOwnership(peer.name, previous.inputs) }
            entries[peer.name] = entry
            namesByNodeID[peer.nodeID, default: []].append(peer.name)
            for cidr in peer.podCIDRs { namesByCIDR[cidr, default: []].append(peer.name) }
        }
        return objects
    }

    /// The look-ups that keep a peer's entry, done on the entry in place (reading it out of the table copied it: its
    /// strings, arrays and models retained and released, per peer): the entry is up to date, or only the peer's
    /// live keys changed (a rotation step) and the groups of the keys that came or went are patched. Nil when the
    /// entry must be rebuilt (identity, pod CIDRs or key material changed).
    private static func refresh(
        _ entry: inout Entry, peer: Peer, live: PeerKeys, local: LocalNode,
        keys: [KeyID: IPsecKey], changedAt: [UInt64], epoch: UInt64,
        derive: PairKeyDerivation
    ) -> (objects: PeerObjects, patched: Bool)? {
        guard entry.inputs.nodeID == peer.nodeID, entry.inputs.underlay == peer.underlay,
            entry.inputs.bootID == peer.bootID, entry.inputs.podCIDRs == peer.podCIDRs,
            isCurrent(entry.inputs, changedAt: changedAt)
        else { return nil }
        if entry.inputs.live == live { return (entry.objects, false) }
        guard peer.nodeID != 0, peer.underlay.family == local.underlay.family else { return nil }
        entry.objects.patch(from: entry.inputs.live, to: live, local: local, peer: peer, keys: keys) {
            key, _, source, destination, sourceBoot, destinationBoot in
            derive(key, source, destination, sourceBoot, destinationBoot).xfrmAlgorithm
        }
        entry.inputs.live = live
        entry.inputs.stamp = epoch
        return (entry.objects, true)
    }

    /// Drops a peer's entry (objects, counts and owner index).
    private mutating func forget(_ name: String) {
        guard let old = entries.removeValue(forKey: name) else { return }
        forgetOwnership(name, old.inputs)
    }

    private mutating func forgetOwnership(_ name: String, _ old: PeerInputs) {
        namesByNodeID[old.nodeID]?.removeAll { $0 == name }
        if namesByNodeID[old.nodeID]?.isEmpty == true { namesByNodeID[old.nodeID] = nil }
        for cidr in old.podCIDRs {
            namesByCIDR[cidr]?.removeAll { $0 == name }
            if namesByCIDR[cidr]?.isEmpty == true { namesByCIDR[cidr] = nil }
        }
    }

    /// Brings every peer's entry up to date (peers gone are forgotten) and returns the index of all of them plus
    /// the global drop policies: what reconcile compares the kernel with.
    mutating func index(
        peers: PeerTable, local: LocalNode, keys: [KeyID: IPsecKey],
        derive: PairKeyDerivation
    ) -> Index {
        index(
            peers.entries.lazy.map { ($0.peer, $0.keys) }, count: peers.count, isPeer: { peers.slot(of: $0) != nil },
            local: local, keys: keys, derive: derive)
    }

    /// `index` over peers and their live keys held apart (a peer without live keys has none).
    mutating func index(
        peers: [String: Peer], peerKeys: [String: PeerKeys], local: LocalNode,
        keys: [KeyID: IPsecKey], derive: PairKeyDerivation
    ) -> Index {
        index(
            peers.values.lazy.map { ($0, peerKeys[$0.name] ?? PeerKeys()) }, count: peers.count,
            isPeer: { peers[$0] != nil }, local: local, keys: keys, derive: derive)
    }

    private mutating func index(
        _ peers: some Sequence<(Peer, PeerKeys)>, count: Int, isPeer: (String) -> Bool,
        local: LocalNode, keys: [KeyID: IPsecKey], derive: PairKeyDerivation
    ) -> Index {
        prepare(local: local, keys: keys)
        for (peer, live) in peers {
            _ = preparedState(for: peer, live: live, local: local, keys: keys, derive: derive)
        }
        if entries.count != count {
            for name in Array(entries.keys) where !isPeer(name) { forget(name) }
        }
        // Counted here, once per pass, rather than kept up to date on every rotation step.
        var stateCount = 0, policyCount = DesiredState.dropPolicies.count
        for entry in entries.values {
            stateCount += entry.objects.stateCount
            policyCount += entry.objects.policyCount
        }
        return Index(
            entries: entries, namesByNodeID: namesByNodeID, namesByCIDR: namesByCIDR,
            stateCount: stateCount, policyCount: policyCount)
    }

    /// A peer's objects as last computed.
    func objects(of name: String) -> PeerObjects? {
        entries[name]?.objects
    }

    /// Every peer's objects and the drop policies, looked up through each object's owner.
    struct Index: DesiredObjects {
        fileprivate let entries: [String: Entry]
        let namesByNodeID: [UInt16: [String]]
        let namesByCIDR: [IPPrefix: [String]]
        let stateCount: Int
        let policyCount: Int

        private func owners(of state: XFRMState) -> [String] {
            let nodeID: UInt16
            if let mark = state.mark {
                nodeID = DatapathLayout.peerNodeID(outMark: mark)
            } else if let decoded = DatapathLayout.decode(spi: state.spi) {
                nodeID = decoded.sender
            } else {
                return []
            }
            return namesByNodeID[nodeID] ?? []
        }

        func desiredState(matching state: XFRMState) -> XFRMState? {
            let id = state.id
            for name in owners(of: state) {
                if let want = entries[name]?.objects.state(id) { return want }
            }
            return nil
        }

        func keeps(_ state: XFRMState) -> Bool {
            let id = state.id
            return owners(of: state).contains { entries[$0]?.objects.keeps(id) == true }
        }

        func desiredPolicy(matching policy: XFRMPolicy) -> XFRMPolicy? {
            let id = policy.id
            if policy.mark == DatapathLayout.encryptMarkMatch, let drop = DesiredState.dropPolicies[id] { return drop }
            let owners: [String]
            if policy.direction == .out {
                guard let mark = policy.mark else { return nil }
                owners = namesByNodeID[DatapathLayout.peerNodeID(outMark: mark)] ?? []
            } else {
                owners = namesByCIDR[policy.selector.source] ?? []
            }
            for name in owners {
                if let want = entries[name]?.objects.policy(id) { return want }
            }
            return nil
        }

        func forEachState(_ body: (XFRMState) -> Void) {
            for entry in entries.values { entry.objects.forEachState(body) }
        }

        func forEachPolicy(_ body: (XFRMPolicy) -> Void) {
            for policy in DesiredState.dropPolicies.values { body(policy) }
            for entry in entries.values { entry.objects.forEachPolicy(body) }
        }
    }
}
