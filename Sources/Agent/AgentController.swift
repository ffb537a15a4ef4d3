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
    /// The controller's timing and batching knobs (configuration.md); the defaults are production values.
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
        /// the previous, smaller one, so the kernel waits; from the limit on, batches are equal and it does not.
        /// A low limit keeps that phase short (measured in the VM: docs/benchmarks.md, "Rotation"). Two batches
        /// exist at once, which also bounds the requests held (~6 per peer).
        public var batchPeersLimit = 128
        /// How much larger each batch is than the one before (at least 2); a remainder smaller than a batch joins
        /// it. Other growth factors showed no gain in rotation time against the kernel floor.
        public var batchGrowth = 2
        /// What a peer record may claim; a record claiming more is refused (`PeerRecordScreen`).
        public var claims = ClaimPolicy()
        /// The underlay interface's MTU: with the current key's algorithm it gives the pod MTU (`ESPTunnelMTU`).
        public var underlayMTU = 1500
        public init() {}
    }

    // Collaborators
    let kernel: any XFRMKernel
    let encryptMap: any EncryptMap
    let publisher: any RecordPublisher
    let keyOps: KeyOperations
    /// `keyOps.derive`; derived transforms are reused through `desiredCache`.
    let derive: PairKeyDerivation
    let settings: Settings
    let now: @Sendable () -> Duration
    let logger: Logger
    let metrics: AgentMetrics

    // Local key state
    var local: LocalNode
    var keys: [KeyID: IPsecKey] = [:] {
        didSet { fingerprints = fingerprints.filter { keys[$0.key] != nil } }
    }
    /// Fingerprints of the held keys, computed once per key load (a SHA-256 per peer per pass otherwise).
    var fingerprints: [KeyID: String] = [:]
    var currentKey: KeyID?
    var advertisedKey: KeyID?
    /// The newest `spi` this node may have on its registry record: set when an advertisement is *sent*, since a
    /// publish whose acknowledgement never arrived (timeout, lost answer) may still have landed. Every later
    /// publish carries at least this, so peers never see our `spi` go back to a key whose SAs they may already
    /// have reclaimed (`advertisedKey`, by contrast, moves only on an acknowledgement).
    var spiOnRecord: KeyID?
    var advertiseRevision: Int64 = 0
    var advertisedAt: Duration?
    var encryptKey: KeyID?
    var phase: RotationPhase = .idle
    var phaseStartedAt: Duration = .zero
    var rotationStartedAt: Duration?
    var lastRotationCompletedAt: Duration?

    // Peers
    /// Every peer known from the registry (departed ones too, during their grace period), by name.
    var peers = PeerTable()
    var installedGlobal = DesiredState()
    /// What `plan(batch:)` and reconcile compute, memoized per peer (see `DesiredStateCache`).
    var desiredCache = DesiredStateCache()
    var adoptedKeysByNode: [UInt16: PeerKeys] = [:]
    var mismatchReported: Set<String> = []
    var registrySynced = false
    var registryConnected = false

    // Acknowledgement bookkeeping
    var appliedRevision: Int64 = 0
    var publishedRevision: Int64 = -1
    var lastAcknowledgeAt: Duration?

    /// Highest ESN output sequence seen per OUT SA (kept when the SA disappears: that is when it is needed).
    var sequenceHistory: [XFRMStateID: UInt64] = [:]
    /// How far past the last seen sequence a re-created OUT SA starts: more packets than any SA can send
    /// between two reconcile passes, so neither a GCM nonce nor a sequence number is ever reused.
    public static let sequenceJump: UInt64 = 1 << 30

    // Counters of inbound SAs of old keys (adopted or still live), from reconcile dumps: packets and when they
    // last moved.
    var counterHistory: [XFRMStateID: (packets: UInt64, changedAt: Duration, pass: UInt64)] = [:]
    var counterPass: UInt64 = 0

    /// Inputs run one at a time: an actor alone would interleave them at every `await`.
    let gate = SerialGate()

    /// False while the last XFRM programming or repair left failures behind.
    var xfrmHealthy = true

    // Status
    var lastReconcile: ReconcileReport?
    var lastError: String?
    var screen: PeerRecordScreen

    public init(
        local: LocalNode, kernel: any XFRMKernel, encryptMap: any EncryptMap, publisher: any RecordPublisher,
        keyOperations: KeyOperations, settings: Settings = Settings(),
        now: @escaping @Sendable () -> Duration, logger: Logger = Logger(label: "ipsec-agent"),
        metrics: AgentMetrics = AgentMetrics()
    ) {
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
                adoptedKeysByNode[UInt16(truncatingIfNeeded: mark.value >> 16), default: PeerKeys()].outbound.insert(
                    key)
            } else if state.destination == local.underlay {
                adoptedKeysByNode[sender, default: PeerKeys()].inbound.insert(key)
            }
        }
        let adoptedKeys = Set(adoptedKeysByNode.values.flatMap { $0.all })
        logger.info(
            "adopted datapath",
            metadata: [
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

    func load(_ key: IPsecKey) async {
        if let current = currentKey, let held = keys[current] {
            if key.id == current {
                if key == held { return }  // the same file again
                metrics.keyLoadError(reason: "same_spi")
                logger.error(
                    "key file rejected: key ID \(key.id) is in use with different key material; keeping the current key"
                )
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

    func rejectKey(_ error: any Error) {
        metrics.keyLoadError(reason: (error as? KeyRotationError)?.reason ?? "rotation_rule")
        logger.error("key file rejected; keeping the current key", metadata: ["error": "\(error)"])
        lastError = "key file: \(error)"
    }
}
