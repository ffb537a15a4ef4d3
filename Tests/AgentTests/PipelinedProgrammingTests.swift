import Agent
import Datapath
import IPsecPrimitives
import Keys
import Logging
import Registry
import Synchronization
import Testing
import XFRM

/// Programming many peers runs in batches: the controller builds the next batch while the kernel applies the
/// previous one, queues it before the previous one completes, and a failure in one batch holds back only its own
/// peers.
@Suite struct PipelinedProgrammingTests {
    static let local = LocalNode(name: "node-1", nodeID: 1, underlay: IPAddress("192.0.2.1")!,
                                 podCIDRs: [IPPrefix("10.244.1.0/24")!], bootID: "boot-1")

    static func underlay(_ i: Int) -> IPAddress { .v4(0xC612_0000 | UInt32(i)) }  // 198.18.x.y

    static func records(_ n: Int, key: IPsecKey) -> [NodeRecord] {
        (2...(n + 1)).map { i in
            NodeRecord(name: "node-\(i)", nodeID: UInt16(i), ipv4: underlay(i),
                       podCIDRs: [IPPrefix(address: .v4(0x0A00_0000 | UInt32(i) << 8), length: 24)!],
                       bootID: "boot-\(i)", spi: key.id, encryptSpi: key.id,
                       keyFingerprint: TestKeys.operations.fingerprint(key), xfrmRevision: 0, revision: 1)
        }
    }

    /// Acknowledges every publish and keeps the last one.
    final class Publisher: RecordPublisher {
        let last = Mutex<NodeRecordUpdate?>(nil)
        let revision = Mutex<Int64>(100)
        func publish(_ update: NodeRecordUpdate) async throws -> Int64 {
            last.withLock { $0 = update }
            return revision.withLock { $0 += 1; return $0 }
        }
    }

    /// The peers a pair key was derived for.
    final class DeriveLog: Sendable {
        let peers = Mutex<Set<IPAddress>>([])
    }

    /// Holds the first batch that installs SAs until the controller has derived a pair key for a peer outside
    /// that batch (proof that the next batch is being built meanwhile), or 10 s passed.
    final class GatedKernel: XFRMKernel {
        let inner: FakeKernel
        let derivedFor = DeriveLog()
        let state = Mutex<(gated: Bool, overlapped: Bool?, batches: [Int])>((false, nil, []))
        init(inner: FakeKernel) { self.inner = inner }

        func apply(_ requests: [XFRMRequest]) async -> [Result<Void, any Error>] {
            let peers = PipelinedProgrammingTests.peersGettingSAs(requests)
            let gate = !peers.isEmpty && state.withLock { s in
                s.batches.append(peers.count)
                defer { s.gated = true }
                return !s.gated
            }
            if gate {
                var overlapped = false
                for _ in 0..<1000 {
                    if derivedFor.peers.withLock({ !$0.subtracting(peers).isEmpty }) { overlapped = true; break }
                    try? await Task.sleep(for: .milliseconds(10))
                }
                state.withLock { $0.overlapped = overlapped }
            }
            return await inner.apply(requests)
        }
        func ownedStates() async throws -> [XFRMState] { try await inner.ownedStates() }
        func ownedPolicies() async throws -> [XFRMPolicy] { try await inner.ownedPolicies() }
        func state(_ id: XFRMStateID) async throws -> XFRMState? { try await inner.state(id) }
        func policy(_ id: XFRMPolicyID) async throws -> XFRMPolicy? { try await inner.policy(id) }
    }

    /// Holds the completion of the first batch that installs SAs until another batch was submitted (proof that
    /// the controller queues the next batch without waiting for the previous one's outcome), or 10 s passed.
    final class QueueingKernel: XFRMKernel {
        let inner: FakeKernel
        let state = Mutex<(submits: Int, gated: Bool, queued: Bool?)>((0, false, nil))
        init(inner: FakeKernel) { self.inner = inner }

        func apply(_ requests: [XFRMRequest]) async -> [Result<Void, any Error>] { await inner.apply(requests) }
        func submit(_ requests: [XFRMRequest], completion: @escaping @Sendable ([Result<Void, any Error>]) -> Void) {
            let installsSAs = requests.contains { if case .addState = $0 { true } else { false } }
            let (gate, submitted) = state.withLock { s in
                s.submits += 1
                defer { if installsSAs { s.gated = true } }
                return (installsSAs && !s.gated, s.submits)
            }
            Task { [self] in
                if gate {
                    var queued = false
                    for _ in 0..<1000 {
                        if state.withLock({ $0.submits > submitted }) { queued = true; break }
                        try? await Task.sleep(for: .milliseconds(10))
                    }
                    state.withLock { $0.queued = queued }
                }
                completion(await inner.apply(requests))
            }
        }
        func ownedStates() async throws -> [XFRMState] { try await inner.ownedStates() }
        func ownedPolicies() async throws -> [XFRMPolicy] { try await inner.ownedPolicies() }
        func state(_ id: XFRMStateID) async throws -> XFRMState? { try await inner.state(id) }
        func policy(_ id: XFRMPolicyID) async throws -> XFRMPolicy? { try await inner.policy(id) }
    }

    /// The peers (by underlay address) that a batch installs SAs for.
    static func peersGettingSAs(_ requests: [XFRMRequest]) -> Set<IPAddress> {
        var peers = Set<IPAddress>()
        for case .addState(let s) in requests { peers.insert(s.destination == local.underlay ? s.source : s.destination) }
        return peers
    }

    /// Records how many peers each batch installs SAs for.
    final class BatchSizeKernel: XFRMKernel {
        let inner: FakeKernel
        let sizes = Mutex<[Int]>([])
        init(inner: FakeKernel) { self.inner = inner }

        func apply(_ requests: [XFRMRequest]) async -> [Result<Void, any Error>] {
            let peers = PipelinedProgrammingTests.peersGettingSAs(requests)
            if !peers.isEmpty { sizes.withLock { $0.append(peers.count) } }
            return await inner.apply(requests)
        }
        func ownedStates() async throws -> [XFRMState] { try await inner.ownedStates() }
        func ownedPolicies() async throws -> [XFRMPolicy] { try await inner.ownedPolicies() }
        func state(_ id: XFRMStateID) async throws -> XFRMState? { try await inner.state(id) }
        func policy(_ id: XFRMPolicyID) async throws -> XFRMPolicy? { try await inner.policy(id) }
    }

    func controller(kernel: any XFRMKernel, map: FakeEncryptMap, publisher: Publisher,
                    derived: DeriveLog? = nil, settings: AgentController.Settings = .init()) -> AgentController {
        let base = TestKeys.operations
        let operations = KeyOperations(
            derive: { key, source, destination, sourceBoot, destinationBoot in
                derived?.peers.withLock { $0.insert(source == Self.local.underlay ? destination : source) }
                return base.derive(key, source, destination, sourceBoot, destinationBoot)
            },
            fingerprint: base.fingerprint, checkRotation: base.checkRotation)
        return AgentController(local: Self.local, kernel: kernel, encryptMap: map, publisher: publisher,
                               keyOperations: operations, settings: settings, now: { .zero },
                               logger: Logger(label: "test", factory: { _ in SwiftLogNoOpLogHandler() }))
    }

    @Test func theNextBatchIsBuiltWhileTheKernelAppliesThePrevious() async throws {
        let log = EffectLog()
        let kernel = GatedKernel(inner: FakeKernel(log: log))
        let publisher = Publisher()
        let controller = controller(kernel: kernel, map: FakeEncryptMap(log: log), publisher: publisher,
                                    derived: kernel.derivedFor)
        let key = TestKeys.key(1)
        try await controller.adopt(ownRecord: nil)
        await controller.peersChanged(Self.records(300, key: key), connected: true)
        await controller.keyFileChanged(.success(key))

        let state = kernel.state.withLock { $0 }
        #expect(state.overlapped == true)
        #expect(state.batches.count > 1)
        #expect(state.batches.first! < 300)
        // Every peer's objects are in, once: one IN and one OUT SA per peer; advertised after all of them.
        #expect(kernel.inner.states.count == 600)
        #expect(publisher.last.withLock { $0?.spi } == key.id)
        #expect(await controller.reconcile().totalRepairs == 0)
    }

    /// Batch sizes start at `firstBatchPeers`, grow by `batchGrowth` up to `batchPeersLimit`, and a remainder
    /// smaller than the batch before it joins that batch.
    @Test(arguments: [
        (first: 16, growth: 2, limit: 128, expected: [16, 32, 64, 188]),
        (first: 2, growth: 8, limit: 128, expected: [2, 16, 128, 154]),
        (first: 4, growth: 1, limit: 128, expected: [4, 8, 16, 32, 64, 176]),  // growth below 2 counts as 2
    ])
    func batchSizesFollowTheSettings(first: Int, growth: Int, limit: Int, expected: [Int]) async throws {
        let log = EffectLog()
        let kernel = BatchSizeKernel(inner: FakeKernel(log: log))
        var settings = AgentController.Settings()
        settings.firstBatchPeers = first
        settings.batchGrowth = growth
        settings.batchPeersLimit = limit
        let controller = controller(kernel: kernel, map: FakeEncryptMap(log: log), publisher: Publisher(),
                                    settings: settings)
        try await controller.adopt(ownRecord: nil)
        await controller.peersChanged(Self.records(300, key: TestKeys.key(1)), connected: true)
        await controller.keyFileChanged(.success(TestKeys.key(1)))
        #expect(kernel.sizes.withLock { $0 } == expected)
        #expect(kernel.inner.states.count == 600)
    }

    /// The kernel's queue never waits for the actor between batches: the next batch is submitted before the
    /// previous one's outcome is back.
    @Test func theNextBatchIsSubmittedBeforeThePreviousCompletes() async throws {
        let log = EffectLog()
        let kernel = QueueingKernel(inner: FakeKernel(log: log))
        let publisher = Publisher()
        let controller = controller(kernel: kernel, map: FakeEncryptMap(log: log), publisher: publisher)
        let key = TestKeys.key(1)
        try await controller.adopt(ownRecord: nil)
        await controller.peersChanged(Self.records(300, key: key), connected: true)
        await controller.keyFileChanged(.success(key))

        #expect(kernel.state.withLock { $0.queued } == true)
        #expect(kernel.inner.states.count == 600)
        #expect(publisher.last.withLock { $0?.spi } == key.id)
        #expect(await controller.reconcile().totalRepairs == 0)
    }

    @Test func aFailureInOneBatchHoldsBackOnlyItsPeersAndTheAdvertisement() async throws {
        let log = EffectLog()
        let fake = FakeKernel(log: log)
        let publisher = Publisher()
        let map = FakeEncryptMap(log: log)
        let controller = controller(kernel: fake, map: map, publisher: publisher)
        let key1 = TestKeys.key(1), key2 = TestKeys.key(2)
        try await controller.adopt(ownRecord: nil)
        await controller.peersChanged(Self.records(200, key: key1), connected: true)
        await controller.keyFileChanged(.success(key1))
        #expect(fake.states.count == 400)

        // Two peers (in different batches, whatever the order) refuse new SAs during the rotation.
        let failing: Set<IPAddress> = [Self.underlay(57), Self.underlay(170)]
        fake.db.withLock { $0.failAddsTo = failing }
        await controller.keyFileChanged(.success(key2))
        #expect(publisher.last.withLock { $0?.spi } == key1.id)  // not advertised
        #expect(try map.localSPI() == key1.id)
        let key2States = fake.states.values.filter { DatapathLayout.decode(spi: $0.spi)?.key == key2.id }
        // Every other peer has both new SAs; the two failing peers have at most their IN SA (its destination is us).
        #expect(key2States.filter { !failing.contains($0.destination) && !failing.contains($0.source) }.count == 2 * 198)
        #expect(key2States.filter { failing.contains($0.destination) }.isEmpty)

        // The kernel recovers: the next tick completes the XFRM phase, advertises and switches.
        fake.db.withLock { $0.failAddsTo = [] }
        await controller.tick()
        #expect(publisher.last.withLock { $0?.encryptSpi } == key2.id)
        #expect(try map.localSPI() == key2.id)
        #expect(fake.states.values.filter { DatapathLayout.decode(spi: $0.spi)?.key == key2.id }.count == 400)
        #expect(await controller.reconcile().totalRepairs == 0)
    }
}
