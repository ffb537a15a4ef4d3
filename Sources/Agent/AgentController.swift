import Datapath
import IPsecPrimitives
import Keys
import Logging
import Registry
import XFRM

/// The agent's brain: holds the rotation state and drives the kernel, the BPF map and the registry in the one
/// order that never drops a packet:
///
/// 1. load and validate a key; 2. install its IN and OUT SAs and OUT policies for every peer (all acked);
/// 3. advertise `spi`; 4. switch the BPF local key, publish `encryptSpi`; 5. egress per peer follows
/// older(local, peer's `spi`); 6. reclaim an old key per peer and direction once the peer acknowledged.
///
/// Every input is a method call (key loaded, peers changed, tick, reconcile); time is injected, so tests drive it
/// with a virtual clock and in-memory fakes. All effects go through `XFRMKernel`, `EncryptMap` and
/// `RecordPublisher`.
public actor AgentController {
    public struct Settings: Sendable {
        /// After advertising, a peer that never acknowledges has its old SAs reclaimed after this long…
        public var fallbackTimeout: Duration = .seconds(300)
        /// …and only if their packet counters stayed still this long.
        public var quietWindow: Duration = .seconds(30)
        /// A peer gone from the registry keeps its SAs this long.
        public var peerRemovalGrace: Duration = .seconds(60)
        /// Acknowledgements (`xfrmRevision`) are published at most this often.
        public var acknowledgeInterval: Duration = .milliseconds(500)
        /// Peers in the first kernel batch when programming many peers. Batches are pipelined (the next one is
        /// built while the kernel applies the previous), so a small first batch gets the kernel working early;
        /// each next batch is `batchGrowth` times larger…
        public var firstBatchPeers = 16
        /// …up to this many peers. While sizes grow, building a batch takes longer than the kernel's work on
        /// the previous, smaller one unless the agent's per-peer work is under 1/`batchGrowth` of the kernel's, so
        /// the kernel waits; from the limit on, batches are equal and it does not. A low limit keeps that phase
        /// short (in the VM, 16/128 against 32/512: rotation/floor 1.17–1.26 against 1.31–1.55 at 1,000 peers,
        /// docs/benchmarks.md). Two batches exist at once, which also bounds the requests held (~6 per peer).
        public var batchPeersLimit = 128
        /// How much larger each batch is than the one before (at least 2); a remainder smaller than a batch joins
        /// it. A 2-peer first batch growing 8× (2, 16, 82 at 100 peers) starts the kernel ~1 ms earlier in the VM
        /// than 16 doubling (16, 32, 52), but no gain in rotation/floor showed in three pooled comparisons
        /// (docs/benchmarks.md, session 10), so the defaults stay.
        public var batchGrowth = 2
        /// What a peer record may claim; a record claiming more is refused (`PeerRecordScreen`).
        public var claims = ClaimPolicy()
        public init() {}
    }

    // Collaborators
    private let kernel: any XFRMKernel
    private let encryptMap: any EncryptMap
    private let publisher: any RecordPublisher
    private let keyOps: KeyOperations
    /// `keyOps.derive`; derived transforms are reused through `desiredCache`.
    private let derive: PairKeyDerivation
    private let settings: Settings
    private let now: @Sendable () -> Duration
    private let logger: Logger
    private let metrics: AgentMetrics

    // Local key state
    private(set) var local: LocalNode
    private var keys: [KeyID: IPsecKey] = [:] {
        didSet { fingerprints = fingerprints.filter { keys[$0.key] != nil } }
    }
    /// Fingerprints of the held keys, computed once per key load (a SHA-256 per peer per pass otherwise).
    private var fingerprints: [KeyID: String] = [:]
    private(set) var currentKey: KeyID?
    private(set) var advertisedKey: KeyID?
    /// The newest `spi` this node may have on its registry record: set when an advertisement is *sent*, since a
    /// publish whose acknowledgement never arrived (timeout, lost answer) may still have landed. Every later
    /// publish carries at least this, so peers never see our `spi` go back to a key whose SAs they may already
    /// have reclaimed (`advertisedKey`, by contrast, moves only on an acknowledgement).
    private var spiOnRecord: KeyID?
    private var advertiseRevision: Int64 = 0
    private var advertisedAt: Duration?
    private(set) var encryptKey: KeyID?
    private(set) var phase: RotationPhase = .idle
    private var phaseStartedAt: Duration = .zero
    private var rotationStartedAt: Duration?
    private var lastRotationCompletedAt: Duration?

    // Peers
    /// Every peer known from the registry (departed ones too, during their grace period), by name.
    private var peers = PeerTable()
    private var installedGlobal = DesiredState()
    /// What `plan(batch:)` and reconcile compute, memoized per peer (see `DesiredStateCache`).
    private var desiredCache = DesiredStateCache()
    private var adoptedKeysByNode: [UInt16: PeerKeys] = [:]
    private var mismatchReported: Set<String> = []
    private var registrySynced = false
    private(set) var registryConnected = false

    // Acknowledgement bookkeeping
    private var appliedRevision: Int64 = 0
    private var publishedRevision: Int64 = -1
    private var lastAcknowledgeAt: Duration?

    /// Highest ESN output sequence seen per OUT SA (kept when the SA disappears: that is when it is needed).
    private var sequenceHistory: [XFRMStateID: UInt64] = [:]
    /// How far past the last seen sequence a re-created OUT SA starts: more packets than any SA can send
    /// between two reconcile passes, so neither a GCM nonce nor a sequence number is ever reused.
    public static let sequenceJump: UInt64 = 1 << 30

    // Counters of inbound SAs of old keys (adopted or still live), from reconcile dumps: packets and when they
    // last moved.
    private var counterHistory: [XFRMStateID: (packets: UInt64, changedAt: Duration, pass: UInt64)] = [:]
    private var counterPass: UInt64 = 0

    /// Inputs run one at a time: an actor alone would interleave them at every `await`.
    private let gate = SerialGate()

    /// False while the last XFRM programming or repair left failures behind.
    private var xfrmHealthy = true

    // Status
    private var lastReconcile: ReconcileReport?
    private var lastError: String?
    private var screen: PeerRecordScreen

    public init(local: LocalNode, kernel: any XFRMKernel, encryptMap: any EncryptMap, publisher: any RecordPublisher,
                keyOperations: KeyOperations, settings: Settings = Settings(),
                now: @escaping @Sendable () -> Duration, logger: Logger = Logger(label: "ipsec-agent"),
                metrics: AgentMetrics = AgentMetrics()) {
        self.local = local
        self.kernel = kernel
        self.encryptMap = encryptMap
        self.publisher = publisher
        self.keyOps = keyOperations
        self.derive = keyOperations.derive
        self.settings = settings
        screen = PeerRecordScreen(policy: settings.claims)
        self.now = now
        self.logger = logger
        self.metrics = metrics
    }

    // MARK: - Start-up: adopt what the kernel, the pinned maps and the registry already hold

    /// Adopts the kernel's owned SAs, the pinned BPF map and this node's last published record, so a restart in
    /// the middle of a rotation converges without flushing anything.
    public func adopt(ownRecord: NodeRecord?) async throws {
        await gate.acquire()
        defer { gate.release() }
        if let own = ownRecord {
            advertisedKey = own.spi
            spiOnRecord = own.spi
            advertiseRevision = own.revision
            appliedRevision = own.xfrmRevision
            publishedRevision = own.xfrmRevision
            if own.nodeID != 0 { local.nodeID = own.nodeID }
        }
        encryptKey = try encryptMap.localSPI()
        for i in peers.indices { peers[i].encryptEntry = nil }
        let adoptedStates = try await kernel.ownedStates().filter(DatapathLayout.owns)
        recordCounters(adoptedStates)
        for state in adoptedStates {
            guard let (key, sender) = DatapathLayout.decode(spi: state.spi) else { continue }
            if sender == local.nodeID, let mark = state.mark {
                adoptedKeysByNode[UInt16(truncatingIfNeeded: mark.value >> 16), default: PeerKeys()].outbound.insert(key)
            } else if state.destination == local.underlay {
                adoptedKeysByNode[sender, default: PeerKeys()].inbound.insert(key)
            }
        }
        let adoptedKeys = Set(adoptedKeysByNode.values.flatMap { $0.all })
        logger.info("adopted datapath", metadata: [
            "advertised": "\(advertisedKey.map(String.init(describing:)) ?? "none")",
            "encrypting": "\(encryptKey.map(String.init(describing:)) ?? "none")",
            "peersWithSAs": "\(adoptedKeysByNode.count)",
            "keysInKernel": "\(adoptedKeys.sorted().map(\.description).joined(separator: ","))",
        ])
    }

    // MARK: - Key file

    /// A key (or a key-file error) from the watcher. Invalid input changes nothing.
    public func keyFileChanged(_ result: Result<IPsecKey, any Error>) async {
        await gate.acquire()
        defer { gate.release() }
        switch result {
        case .failure(let error):
            metrics.keyLoadError(reason: "invalid")
            logger.error("key file rejected; keeping the current key", metadata: ["error": "\(error)"])
            lastError = "key file: \(error)"
        case .success(let key):
            await load(key)
        }
    }

    private func load(_ key: IPsecKey) async {
        if let current = currentKey, let held = keys[current] {
            if key.id == current {
                if key == held { return }  // the same file again
                metrics.keyLoadError(reason: "same_spi")
                logger.error("key file rejected: key ID \(key.id) is in use with different key material; keeping the current key")
                lastError = "key file: key ID \(key.id) already in use with other material"
                return
            }
            do {
                try keyOps.checkRotation(key, held)
            } catch {
                rejectKey(error)
                return
            }
        } else if let advertised = advertisedKey, key.id != advertised, !advertised.isOlder(than: key.id) {
            // After a restart the key material is gone but the advertised ID is known: the first key must not
            // move the ID backwards or jump past what peers order as newer.
            rejectKey(KeyRotationError.keyIDOrder(current: advertised, new: key.id))
            return
        }
        logger.info("key loaded", metadata: ["keyID": "\(key.id)", "algorithm": "\(key.algorithm)"])
        keys[key.id] = key
        fingerprints[key.id] = keyOps.fingerprint(key)
        if currentKey != key.id {
            rotationStartedAt = now()
            metrics.rotationStarted()
        }
        currentKey = key.id
        await advance()
    }

    private func rejectKey(_ error: any Error) {
        metrics.keyLoadError(reason: (error as? KeyRotationError)?.reason ?? "rotation_rule")
        logger.error("key file rejected; keeping the current key", metadata: ["error": "\(error)"])
        lastError = "key file: \(error)"
    }

    // MARK: - The rotation

    /// Moves the rotation forward as far as acknowledgements allow. Idempotent: called after every input.
    private func advance() async {
        // "Every known peer" means nothing before the registry's first snapshot: a restarted agent that advertised
        // then would promise inbound SAs it has not installed.
        guard let key = currentKey, registrySynced else { return }

        // 2. XFRM: the new key for every peer, both directions. Nothing is advertised until all is acked.
        if advertisedKey != key || phase == .xfrm {
            enter(.xfrm)
            for i in peers.indices {
                peers[i].keys.inbound.insert(key)
                peers[i].keys.outbound.insert(key)
            }
            let globalOK = await programGlobal()
            let peersOK = await program(slots: Array(peers.indices))
            let programmed = globalOK && peersOK
            xfrmHealthy = programmed
            guard programmed else {
                logger.warning("XFRM programming incomplete; not advertising key \(key) yet (will retry)")
                return
            }
        }

        // 3. Advertise.
        if advertisedKey != key {
            enter(.advertise)
            spiOnRecord = key  // from now on every publish says "I can receive `key`" (its SAs are all installed)
            guard let revision = await publishRecord(spi: key, encryptSpi: encryptKey) else { return }
            advertisedKey = key
            advertiseRevision = revision
            advertisedAt = now()
            logger.info("advertised key \(key)", metadata: ["revision": "\(revision)"])
        }

        // Peer entries first: a fingerprint verdict may change with the key just loaded.
        updateEncryptEntries()

        // 4. BPF: switch the local key, then tell peers.
        if encryptKey != key {
            enter(.bpf)
            do {
                try encryptMap.setLocalSPI(key)
            } catch {
                lastError = "bpf: \(error)"
                logger.error("BPF local key switch failed (will retry)", metadata: ["error": "\(error)"])
                return
            }
            encryptKey = key
            guard await publishRecord(spi: key, encryptSpi: key) != nil else { return }
        }

        // 5/6. Reclaim by acknowledgement.
        if phase != .idle || hasOldKeys { enter(.reclaim) }
        await reclaim()
    }

    private var hasOldKeys: Bool {
        peers.entries.contains { entry in
            entry.keys.inbound.contains { $0 != currentKey } || entry.keys.outbound.contains { $0 != currentKey }
        }
    }

    private func enter(_ next: RotationPhase) {
        guard next != phase else { return }
        let t = now()
        if phase != .idle {
            metrics.phaseDuration(phase, t - phaseStartedAt)
            logger.info("rotation phase \(phase.rawValue) done", metadata: ["duration": "\(t - phaseStartedAt)"])
        }
        phase = next
        phaseStartedAt = t
        metrics.setPhase(next)
    }

    /// Removes old keys per peer and direction once the peer can no longer use them.
    private func reclaim() async {
        guard let current = currentKey, advertisedKey == current, encryptKey == current else { return }
        // The steady state (every peer on the current key only) has nothing to reclaim: no per-peer work.
        guard hasOldKeys || keys.count > 1 || phase != .idle else { return }
        var changed: [Int] = []
        var fallbacks = 0
        // One clock reading for the pass (a clock read per peer is a system call on some hosts), and none of the
        // per-SA fallback checks before the fallback timeout.
        let t = now()
        let fallbackOpen = advertisedAt.map { t - $0 >= settings.fallbackTimeout } ?? false
        for i in peers.indices {
            let live = peers.entries[i].keys
            // The peer's fields are read in place: copying the `Peer` retained its strings and arrays, per peer.
            // A peer holding other key material under our key ID will not switch to us: keep everything.
            if peers.entries[i].peer.spi == current, fingerprintMismatch(peers.entries[i].peer) { continue }
            let (spi, encryptSpi) = (peers.entries[i].peer.spi, peers.entries[i].peer.encryptSpi)
            let (xfrmRevision, nodeID) = (peers.entries[i].peer.xfrmRevision, peers.entries[i].peer.nodeID)
            var next = live
            for old in live.inbound where old != current {
                // The peer sends older(its encryptSpi, its view of our spi). It has seen our advertisement once its
                // xfrmRevision reached the revision of that advertisement.
                let acked = encryptSpi.map { old.isOlder(than: $0) } == true && old.isOlder(than: current)
                    && xfrmRevision >= advertiseRevision
                if acked || fallbackOpen && fallbackAllowed(DatapathLayout.spi(key: old, sender: nodeID), local.underlay, at: t) {
                    if !acked { fallbacks += 1 }
                    next.inbound.remove(old)
                }
            }
            // We send older(our key, peer's spi): once both are newer, nothing of ours uses `old` towards it. No
            // fallback here: while the peer advertises `old` it can receive nothing else, so the SA stays.
            for old in live.outbound where old != current {
                if spi.map({ old.isOlder(than: $0) }) == true && old.isOlder(than: current) {
                    next.outbound.remove(old)
                }
            }
            if next != live {
                peers[i].keys = next
                changed.append(i)
            }
        }
        if fallbacks > 0 {
            metrics.fallbackReclaims(fallbacks)
            logger.warning("reclaimed \(fallbacks) SA(s) by fallback: peers never acknowledged but counters stayed still")
        }
        if !changed.isEmpty { _ = await program(slots: changed) }
        for key in Set(keys.keys) where key != current && !peers.entries.contains(where: { $0.keys.all.contains(key) }) {
            keys[key] = nil
        }
        if phase == .reclaim, !hasOldKeys {
            enter(.idle)
            lastRotationCompletedAt = now()
            if let started = rotationStartedAt {
                metrics.rotationCompleted(duration: now() - started)
                logger.info("rotation to key \(current) complete", metadata: ["duration": "\(now() - started)"])
                rotationStartedAt = nil
            }
        }
    }

    /// Fallback for an inbound SA from a peer that never acknowledges (asked once the fallback timeout since the
    /// advertisement has passed): it may go once its packet counter stood still for the quiet window.
    private func fallbackAllowed(_ spi: UInt32, _ destination: IPAddress, at t: Duration) -> Bool {
        let id = XFRMStateID(destination: destination, spi: spi)
        guard let history = counterHistory[id] else { return false }
        return t - history.changedAt >= settings.quietWindow
    }

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
                  let underlay = local.underlay.family == .v4 ? record.ipv4 : record.ipv6 else { continue }
            seen.insert(record.name)
            let peer = Peer(name: record.name, nodeID: record.nodeID, underlay: underlay, podCIDRs: record.podCIDRs,
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
                logger.warning("peer now advertises an older key than before", metadata: [
                    "peer": "\(record.name)", "before": "\(before)", "now": "\(now)", "recordRevision": "\(record.revision)"])
            }
            if previous == nil || previous?.nodeID != peer.nodeID || previous?.underlay != peer.underlay
                || previous?.bootID != peer.bootID || previous?.podCIDRs != peer.podCIDRs {
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
            for i in peers.indices where peers.entries[i].departedAt == nil && !seen.contains(peers.entries[i].peer.name) {
                peers[i].departedAt = now()
                logger.info("peer left the registry; keeping its SAs for the grace period", metadata: ["peer": "\(peers.entries[i].peer.name)"])
            }
        }
        if !touched.isEmpty { _ = await program(slots: touched) }
        updateEncryptEntries()
        await advance()
        await acknowledgeIfDue()
    }

    /// A peer record whose claims are not its own: the peer stays as it was; logged and counted once per version.
    private func refuse(_ record: NodeRecord, _ conflict: ClaimConflict) {
        guard screen.firstReport(of: record) else { return }
        lastError = "peer record \(record.name) refused: \(conflict.message)"
        metrics.peerRecordRejected(reason: conflict.reason.rawValue)
        logger.error("peer record refused; keeping that peer's last good state", metadata: [
            "peer": "\(record.name)", "recordRevision": "\(record.revision)", "reason": "\(conflict.reason.rawValue)",
            "problem": "\(conflict.message)"])
    }

    /// Keys a new peer gets SAs for: every key this node may send or receive with.
    private var liveLocalKeys: Set<KeyID> {
        var set = Set(keys.keys)
        for k in [currentKey, advertisedKey, encryptKey] { if let k { set.insert(k) } }
        return set
    }

    /// Points each peer's pod CIDRs at its advertised key in the BPF map, after its SAs exist.
    private func updateEncryptEntries() {
        for i in peers.indices {
            guard var spi = peers.entries[i].peer.spi, peers.entries[i].installed != nil else { continue }
            let name = peers.entries[i].peer.name
            if fingerprintMismatch(peers.entries[i].peer) {
                // Keep egress on the newest older key both sides still share; never on the mismatched one.
                let fallback = peers.entries[i].keys.outbound.filter { $0.isOlder(than: spi) }.max()
                if !mismatchReported.contains(name) {
                    mismatchReported.insert(name)
                    metrics.fingerprintMismatch()
                    logger.error("peer advertises key \(spi) with another fingerprint; not switching to it",
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
                logger.error("BPF peer update failed (reconcile will retry)", metadata: ["peer": "\(name)", "error": "\(error)"])
            }
        }
    }

    /// True when the peer advertises a key ID we hold, with a fingerprint of other key material.
    private func fingerprintMismatch(_ peer: Peer) -> Bool {
        guard let spi = peer.spi, let held = fingerprints[spi], !peer.keyFingerprint.isEmpty else { return false }
        return peer.keyFingerprint != held
    }

    private func removePeer(_ name: String) async {
        guard let slot = peers.slot(of: name) else { return }
        for cidr in peers.entries[slot].peer.podCIDRs { try? encryptMap.deletePeer(cidr) }
        peers[slot].encryptEntry = nil
        peers[slot].keys = PeerKeys()
        _ = await program(slots: [slot])
        peers.remove(name)
        logger.info("peer removed after its grace period", metadata: ["peer": "\(name)"])
    }

    // MARK: - Time

    /// Periodic work: peer grace expiry, fallback reclaim, retries, debounced acknowledgements.
    public func tick() async {
        await gate.acquire()
        defer { gate.release() }
        if registryConnected {
            let t = now()
            let expired = peers.entries.compactMap { entry in
                entry.departedAt.map { t - $0 >= settings.peerRemovalGrace } == true ? entry.peer.name : nil
            }
            for name in expired { await removePeer(name) }
        }
        await advance()
        await acknowledgeIfDue()
    }

    /// Publishes `xfrmRevision` when the datapath reflects newer registry state than last published.
    private func acknowledgeIfDue() async {
        guard appliedRevision > publishedRevision, currentKey == nil || advertisedKey != nil else { return }
        if let last = lastAcknowledgeAt, now() - last < settings.acknowledgeInterval { return }
        lastAcknowledgeAt = now()
        _ = await publishRecord(spi: spiOnRecord ?? advertisedKey, encryptSpi: encryptKey)
    }

    // MARK: - Kernel programming

    private func programGlobal() async -> Bool {
        // Every rotation passes here: when the drop policies are installed already, no model or diff is built.
        guard installedGlobal.policies != DesiredState.dropPolicies else { return true }
        var want = DesiredState()
        want.policies = DesiredState.dropPolicies
        let diff = XFRMDiff(desired: want, actualStates: [], actualPolicies: installedGlobal.policies.values)
        guard !diff.isEmpty else { return true }
        let requests = diff.installRequests
        let results = await kernel.apply(requests)
        noteFailures(requests, results, 0..<requests.count)
        let ok = results.allSatisfy { result in
            if case .failure(let error) = result { return Self.isAlreadyExists(error) }
            return true
        }
        if ok { installedGlobal = want }
        return ok
    }

    /// Brings the peers in these table slots from what was last installed to what is desired now. Installs precede
    /// removals; a peer's model is only advanced when every request for it succeeded. The slots hold for the whole
    /// call: every caller holds the gate, and nothing inserts or removes a peer while it runs (so no peer is looked
    /// up by name, twice per peer, in a rotation).
    ///
    /// Pipelined: while the kernel applies one batch (off the actor, on the kernel adapter's own thread), the
    /// actor builds the next, so the agent's per-peer work (derivation, diff, requests) runs beside the kernel's
    /// instead of adding to it. Each batch is sent as soon as it is built, before the previous batch's outcome is
    /// awaited: the kernel adapter's queue then goes from one batch to the next without waiting for two thread
    /// hand-offs (to the actor and back). At most two batches are in flight. Batches touch disjoint peers; each
    /// batch's own order (SAs, policies, then removals for peers whose installs all succeeded) is kept.
    @discardableResult
    private func program(slots: [Int]) async -> Bool {
        var size = max(1, settings.firstBatchPeers)
        var allOK = true
        var start = 0
        var inFlight: (plan: BatchPlan, pending: KernelBatch.Pending)?
        repeat {
            var sent: (plan: BatchPlan, pending: KernelBatch.Pending)?
            if start < slots.count {
                // A remainder smaller than this batch joins it (no tiny last batch).
                var end = min(start + size, slots.count)
                if slots.count - end < size { end = slots.count }
                var next = plan(batch: slots[start..<end])  // while the kernel works on the previous batch
                start = end
                size = min(max(2, settings.batchGrowth) * size, max(size, settings.batchPeersLimit))
                let batch = next.batch
                next.batch = KernelBatch()  // the plan keeps only what `finish` needs
                sent = (next, batch.send(to: kernel))
            }
            if let previous = inFlight, !finish(previous.plan, await previous.pending.outcome) { allOK = false }
            inFlight = sent
        } while inFlight != nil
        return allOK
    }

    /// One batch as built on the actor: the peers' new models and the kernel work that installs them.
    private struct BatchPlan {
        var slots: ArraySlice<Int>
        var wants: [PeerObjects]
        var batch: KernelBatch
    }

    private func plan(batch slots: ArraySlice<Int>) -> BatchPlan {
        // One batch: every peer's new SAs first, then every policy — SAs exist before any policy points at them,
        // and the kernel gets the same shape of batch as the XFRM client's floor in the benchmark.
        var wants: [PeerObjects] = []
        wants.reserveCapacity(slots.count)
        // Room for a rotation step's two SAs and one policy per peer (arrays grown from empty reallocate and copy
        // every request each time they double).
        var requests: [XFRMRequest] = [], owners: [Int32] = []
        requests.reserveCapacity(3 * slots.count)
        owners.reserveCapacity(3 * slots.count)
        var policyRequests: [XFRMRequest] = [], policyOwners: [Int32] = []
        policyRequests.reserveCapacity(slots.count)
        policyOwners.reserveCapacity(slots.count)
        var removals: [XFRMRequest] = []
        var removalOwners: [Int32] = []
        desiredCache.prepare(local: local, keys: keys)
        // Peers are read from a local reference to the table: an entry's fields read through the actor's stored
        // property were copied (retaining the peer's strings and arrays) to be passed on. Dropped before `finish`
        // writes to the table, so that write copies nothing.
        let table = peers
        for slot in slots {
            let want = desiredCache.preparedState(for: table.entries[slot].peer, live: table.entries[slot].keys,
                                                  local: local, keys: keys, derive: derive)
            let have = table.entries[slot].installed ?? PeerObjects()
            let owner = Int32(wants.count)
            wants.append(want)
            // A rotation step only adds: no diff needed.
            if XFRMDiff.forEachAddition(installed: have, desired: want, state: {
                requests.append(.addState($0))
                owners.append(owner)
            }, policy: {
                policyRequests.append(.addPolicy($0))
                policyOwners.append(owner)
            }) { continue }
            let diff = XFRMDiff(installed: have, desired: want)
            for state in diff.addStates {
                requests.append(.addState(state))
                owners.append(owner)
            }
            for policy in diff.addPolicies {
                policyRequests.append(.addPolicy(policy))
                policyOwners.append(owner)
            }
            for policy in diff.updatePolicies {
                policyRequests.append(.updatePolicy(policy))
                policyOwners.append(owner)
            }
            for request in diff.removalRequests {
                removals.append(request)
                removalOwners.append(owner)
            }
        }
        requests += policyRequests
        owners += policyOwners
        return BatchPlan(slots: slots, wants: wants, batch: KernelBatch(
            installs: requests, installOwners: owners, removals: removals, removalOwners: removalOwners))
    }

    /// Records a sent batch's outcome on the actor: advances the models of the peers whose installs all
    /// succeeded, logs failures. True when nothing failed.
    private func finish(_ plan: BatchPlan, _ outcome: KernelBatch.Outcome) -> Bool {
        for (request, error) in outcome.installFailures { noteFailure(request, error) }
        for (index, slot) in plan.slots.enumerated() where !outcome.failed.contains(Int32(index)) {
            peers[slot].installed = plan.wants[index]
        }
        for (request, error) in outcome.removalFailures {
            logger.warning("XFRM removal failed (reconcile will retry)", metadata: ["request": "\(request)", "error": "\(error)"])
        }
        return outcome.failed.isEmpty && outcome.removalFailures.isEmpty
    }

    private func noteFailures(_ requests: [XFRMRequest], _ results: [Result<Void, any Error>], _ range: Range<Int>) {
        for i in range {
            if case .failure(let error) = results[i], !Self.isAlreadyExists(error) { noteFailure(requests[i], error) }
        }
    }

    private func noteFailure(_ request: XFRMRequest, _ error: any Error) {
        lastError = "xfrm: \(error)"
        metrics.xfrmError()
        logger.error("XFRM request failed", metadata: ["request": "\(request)", "error": "\(error)"])
    }

    private func publishRecord(spi: KeyID?, encryptSpi: KeyID?) async -> Int64? {
        let fingerprint = spi.flatMap { fingerprints[$0] } ?? ""
        let update = NodeRecordUpdate(spi: spi, encryptSpi: encryptSpi, keyFingerprint: fingerprint,
                                      xfrmRevision: appliedRevision)
        do {
            let revision = try await publisher.publish(update)
            publishedRevision = update.xfrmRevision
            return revision
        } catch {
            lastError = "registry: \(error)"
            logger.warning("publishing the node record failed (will retry)", metadata: ["error": "\(error)"])
            return nil
        }
    }

    static func isAlreadyExists(_ error: any Error) -> Bool {
        (error as? XFRMKernelError) == .alreadyExists
    }

    static func isNotFound(_ error: any Error) -> Bool {
        (error as? XFRMKernelError) == .notFound
    }

    // MARK: - Reconcile

    /// Dumps the agent's own objects, repairs any difference from the desired state, and refreshes the BPF map.
    /// Removes nothing until the registry delivered its first snapshot.
    @discardableResult
    public func reconcile() async -> ReconcileReport {
        await gate.acquire()
        defer { gate.release() }
        let started = now()
        var report = ReconcileReport()
        do {
            // Filtered here too: whatever the kernel adapter returns, foreign objects are never diffed or deleted.
            let states = Self.owned(try await kernel.ownedStates(), DatapathLayout.owns)
            let policies = Self.owned(try await kernel.ownedPolicies(), DatapathLayout.owns)
            recordCounters(states)
            let want = desiredCache.index(peers: peers, local: local, keys: keys, derive: derive)
            var diff = XFRMDiff(desired: want, actualStates: states, actualPolicies: policies)
            report.record(diff, removalsAllowed: registrySynced)
            diff.addStates = diff.addStates.map(resumingSequence)
            diff.replaceStates = diff.replaceStates.map(resumingSequence)
            var requests = diff.installRequests
            if registrySynced { requests += diff.removalRequests }
            if !requests.isEmpty {
                let results = await kernel.apply(requests)
                for (i, result) in results.enumerated() {
                    if case .failure(let error) = result, !Self.isAlreadyExists(error), !Self.isNotFound(error) {
                        report.errors += 1
                        lastError = "xfrm: \(error)"
                        logger.error("reconcile repair failed", metadata: ["request": "\(requests[i])", "error": "\(error)"])
                    }
                }
                logger.info("reconcile repaired \(requests.count) object(s)", metadata: ["summary": "\(report.summary)"])
            }
            xfrmHealthy = report.errors == 0
            if report.errors == 0 {
                for i in peers.indices {  // every peer's share of `want`, now in the kernel
                    peers[i].installed = desiredCache.objects(of: peers.entries[i].peer.name)
                }
                installedGlobal.policies = DesiredState.dropPolicies
            }
            report.bpfRepairs = repairEncryptMap()
        } catch {
            report.errors += 1
            lastError = "reconcile: \(error)"
            logger.error("reconcile could not read the kernel", metadata: ["error": "\(error)"])
        }
        report.duration = now() - started
        report.finishedAt = now()
        metrics.reconciled(report)
        lastReconcile = report
        await advance()
        return report
    }

    /// The owned objects of a dump; no copy when the kernel adapter already filtered (the usual case).
    public static func owned<T>(_ objects: [T], _ owns: (T) -> Bool) -> [T] {
        objects.allSatisfy(owns) ? objects : objects.filter(owns)
    }

    /// An OUT SA re-created after it vanished (a flush, a tampered SA) starts past every sequence number it used.
    private func resumingSequence(_ state: XFRMState) -> XFRMState {
        guard state.mark != nil, let last = sequenceHistory[state.id] else { return state }
        var resumed = state
        resumed.outboundSequence = last &+ Self.sequenceJump
        logger.warning("re-creating a lost OUT SA past its last sequence number", metadata: [
            "state": "\(state)", "lastSequence": "\(last)"])
        return resumed
    }

    private func recordCounters(_ states: [XFRMState]) {
        // In place: a steady pass allocates nothing. Only inbound SAs of keys other than the current one are
        // tracked (the only ones a fallback reclaim may remove), so a cluster on one key tracks none. Entries of
        // SAs absent from this dump are dropped after it.
        let t = now()
        counterPass &+= 1
        let pass = counterPass
        var tracked = 0
        for state in states {
            if state.mark != nil {
                if let sequence = state.outboundSequence {
                    let id = state.id
                    sequenceHistory[id] = max(sequenceHistory[id] ?? 0, sequence)
                }
                continue
            }
            guard let key = DatapathLayout.decode(spi: state.spi)?.key, key != currentKey else { continue }
            tracked += 1
            let id = state.id
            let packets = state.counters?.packets ?? 0
            if let i = counterHistory.index(forKey: id), counterHistory.values[i].packets == packets {
                counterHistory.values[i].pass = pass
            } else {
                counterHistory[id] = (packets, t, pass)
            }
        }
        if counterHistory.count != tracked {
            counterHistory = counterHistory.filter { $0.value.pass == pass }
        }
    }

    /// Makes the pinned map match the agent's view (local key, one entry per peer pod CIDR).
    private func repairEncryptMap() -> Int {
        var repairs = 0
        do {
            if let encryptKey, try encryptMap.localSPI() != encryptKey {
                try encryptMap.setLocalSPI(encryptKey)
                repairs += 1
            }
            let actual = try encryptMap.peers()
            var wanted: [IPPrefix: PeerEncryptEntry] = [:]
            for entry in peers.entries {
                guard let encryptEntry = entry.encryptEntry else { continue }
                for cidr in entry.peer.podCIDRs { wanted[cidr] = encryptEntry }
            }
            for (cidr, entry) in wanted where actual[cidr] != entry {
                try encryptMap.upsertPeer(cidr, entry)
                repairs += 1
            }
            if registrySynced {
                for cidr in actual.keys where wanted[cidr] == nil {
                    try encryptMap.deletePeer(cidr)
                    repairs += 1
                }
            }
        } catch {
            lastError = "bpf: \(error)"
            logger.error("BPF map repair failed", metadata: ["error": "\(error)"])
        }
        return repairs
    }

    // MARK: - Status

    public func status() -> AgentStatus {
        let t = now()
        return AgentStatus(
            node: local.name, nodeID: local.nodeID, underlay: local.underlay.description,
            currentKey: currentKey?.rawValue, advertisedKey: advertisedKey?.rawValue, encryptKey: encryptKey?.rawValue,
            phase: phase, keysInUse: Set(peers.entries.flatMap { $0.keys.all }).union(currentKey.map { [$0] } ?? [])
                .map(\.rawValue).sorted(),
            secondsSinceRotation: lastRotationCompletedAt.map { Self.seconds(t - $0) },
            registryConnected: registryConnected,
            peers: peers.entries.sorted { $0.peer.name < $1.peer.name }.map { entry in
                let peer = entry.peer, live = entry.keys
                let egress: UInt8? = switch (encryptKey, entry.encryptEntry?.peerSPI) {
                case (let l?, let p?): EncryptMark.egressSPI(local: l, peer: p).rawValue
                default: nil
                }
                return AgentStatus.PeerRow(
                    name: peer.name, nodeID: peer.nodeID, address: peer.underlay.description, spi: peer.spi?.rawValue,
                    encryptSpi: peer.encryptSpi?.rawValue, egressSpi: egress,
                    inboundKeys: live.inbound.map(\.rawValue).sorted(), outboundKeys: live.outbound.map(\.rawValue).sorted(),
                    departing: entry.departedAt != nil)
            },
            lastReconcile: lastReconcile.map {
                AgentStatus.ReconcileSummary(secondsAgo: Self.seconds(t - $0.finishedAt), durationMillis: Self.seconds($0.duration) * 1000,
                                             repairs: $0.summary, errors: $0.errors)
            },
            lastError: lastError)
    }

    /// Ready: the first full programming and advertisement are done and XFRM programming currently succeeds.
    public func isReady() -> Bool {
        advertisedKey != nil && encryptKey != nil && xfrmHealthy
    }

    /// The peers and key state for `trace`.
    public func traceInputs() -> (local: LocalNode, encryptKey: KeyID?, peers: [Peer], entries: [String: PeerEncryptEntry]) {
        (local, encryptKey, peers.entries.map(\.peer),
         Dictionary(uniqueKeysWithValues: peers.entries.compactMap { e in e.encryptEntry.map { (e.peer.name, $0) } }))
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
