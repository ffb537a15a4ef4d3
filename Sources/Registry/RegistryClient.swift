import Logging

/// The agent's view of the node registry, resilient to outages; works over any `NodeRegistry` backend.
///
/// `run()` keeps a session open until cancelled: publish the node's own record (if `publish` was called),
/// list every record, then watch from the list's revision while heartbeating every `leaseTTL / 3`. Any
/// failure ends the session; the next one starts after the backoff chosen by `ReconnectStateMachine`
/// (1 s doubling to 8 s, jittered, reset only after a connection stayed healthy for the current backoff),
/// again with a full list before the watch. A `.resyncRequired` watch answer lists again without counting
/// as a failure.
///
/// While the registry is unreachable the last known peer set is kept and never reported as gone; the
/// state becomes `.unreachable`. After reconnecting, the fresh list is authoritative (a peer deleted
/// during the outage disappears then).
public actor RegistryClient {
    /// Whether the client is listed and watching, as `ipsec-agent status` and the `ipsec_registry_connected` gauge show it.
    public enum ConnectionState: Sendable, Hashable, CustomStringConvertible {
        /// Before the first session succeeded.
        case connecting
        /// Listed and watching.
        case connected
        /// The last session failed; peers are the last known set. `reason` never carries credentials.
        case unreachable(reason: String)

        public var description: String {
            switch self {
            case .connecting: "connecting"
            case .connected: "connected"
            case .unreachable(let reason): "registry unreachable: \(reason)"
            }
        }
    }

    /// What the client yields to the agent: the peer set after each change, and connection state changes.
    public enum Update: Sendable, Hashable {
        /// The full peer set (every live record except this node's own), after each change.
        case peers([String: NodeRecord])
        /// The connection state changed.
        case connection(ConnectionState)
    }

    public nonisolated let nodeName: String
    public nonisolated let leaseTTL: Duration
    /// Peer set snapshots and connection state changes, newest kept when the consumer falls behind.
    public nonisolated let updates: AsyncStream<Update>

    public private(set) var connectionState: ConnectionState = .connecting
    /// The last known peers (never emptied by an outage).
    public private(set) var peers: [String: NodeRecord] = [:]
    /// Connection attempts after the first one.
    public private(set) var reconnectCount = 0
    /// Watch events received (puts and deletions, including this node's own).
    public private(set) var watchEventCount = 0
    /// `.resyncRequired` answers handled by listing again.
    public private(set) var resyncCount = 0
    /// The record as last acknowledged by the registry.
    public private(set) var acknowledgedRecord: NodeRecord?
    /// Bumped with every update sent on `updates`: a `View`'s version.
    private var viewVersion: UInt64 = 0

    private let registry: any NodeRegistry
    private let clock: RegistryClock
    private let random: @Sendable () -> Double
    private let logger: Logger
    private let updatesContinuation: AsyncStream<Update>.Continuation
    private var machine: ReconnectStateMachine

    /// The record to keep published, and its generation (bumped by every `publish`).
    private var desiredRecord: NodeRecord?
    private var desiredGeneration: UInt64 = 0
    private var acknowledgedGeneration: UInt64 = 0
    private var publishWaiters: [Int: (generation: UInt64, continuation: CheckedContinuation<NodeRecord, any Error>)] =
        [:]
    private var nextWaiterID = 0
    /// Serializes calls to `registry.publish` so an older record never overtakes a newer one.
    private var publishInFlight = false
    private var publishQueue: [CheckedContinuation<Void, Never>] = []

    /// - Parameters:
    ///   - registry: the backend (embedded server client, etcd, or in-memory).
    ///   - nodeName: this node's name; its own record is excluded from `peers`.
    ///   - leaseTTL: the registry's lease TTL; heartbeats go every third of it.
    ///   - backoff: reconnect backoff bounds and jitter.
    ///   - clock: time source; tests pass a virtual clock.
    ///   - random: 0..<1 source for the jitter.
    public init<C: Clock>(
        registry: any NodeRegistry,
        nodeName: String,
        leaseTTL: Duration = .seconds(30),
        backoff: ReconnectStateMachine.Configuration = .init(),
        clock: C = ContinuousClock(),
        random: @escaping @Sendable () -> Double = { Double.random(in: 0..<1) },
        logger: Logger = Logger(label: "ipsec-agent.registry-client")
    ) where C.Duration == Duration {
        self.registry = registry
        self.nodeName = nodeName
        self.leaseTTL = leaseTTL
        self.clock = RegistryClock(clock)
        self.random = random
        self.logger = logger
        self.machine = ReconnectStateMachine(configuration: backoff)
        (updates, updatesContinuation) = AsyncStream.makeStream(of: Update.self, bufferingPolicy: .bufferingNewest(256))
    }

    deinit {
        updatesContinuation.finish()
    }

    // MARK: Publishing

    /// Publishes this node's record and returns once the registry acknowledged it (with its node ID).
    /// The record is remembered and re-published at every reconnect. If the registry is unreachable the
    /// call waits until `run()` reconnects and publishes it (or a newer record); cancellation ends the wait.
    /// A record the registry refuses (invalid, forbidden) throws at once.
    public func publish(_ record: NodeRecord) async throws -> NodeRecord {
        guard record.name == nodeName else {
            throw RegistryError.forbidden(
                "this client publishes only the record of \(nodeName), not \(record.name.prefix(64))")
        }
        var record = record
        if record.nodeID == 0, let known = acknowledgedRecord?.nodeID { record.nodeID = known }
        desiredRecord = record
        desiredGeneration += 1
        let generation = desiredGeneration
        do {
            return try await publishDesired()
        } catch let error as RegistryError {
            switch error {
            case .invalidRecord, .forbidden, .unauthorized: throw error
            default: break
            }
        } catch is CancellationError {
            throw CancellationError()
        } catch {}
        if acknowledgedGeneration >= generation, let acknowledgedRecord { return acknowledgedRecord }
        return try await waitForAcknowledgement(of: generation)
    }

    /// Publishes the current desired record (serialized) and wakes every waiter it satisfies.
    @discardableResult
    private func publishDesired() async throws -> NodeRecord {
        await acquirePublishSlot()
        defer { releasePublishSlot() }
        guard let record = desiredRecord else { throw RegistryError.notFound("no record to publish") }
        let generation = desiredGeneration
        let stored = try await registry.publish(record)
        if generation >= acknowledgedGeneration {
            acknowledgedGeneration = generation
            acknowledgedRecord = stored
        }
        if desiredRecord?.nodeID == 0 { desiredRecord?.nodeID = stored.nodeID }
        // The next write must be newer than this one (the registry refuses anything else as a replay).
        if let desired = desiredRecord?.sequence, desired < stored.sequence {
            desiredRecord?.sequence = stored.sequence
        }
        for (id, waiter) in publishWaiters where waiter.generation <= acknowledgedGeneration {
            publishWaiters[id] = nil
            waiter.continuation.resume(returning: stored)
        }
        return stored
    }

    private func acquirePublishSlot() async {
        if !publishInFlight {
            publishInFlight = true
            return
        }
        await withCheckedContinuation { publishQueue.append($0) }
    }

    private func releasePublishSlot() {
        if publishQueue.isEmpty {
            publishInFlight = false
        } else {
            publishQueue.removeFirst().resume()
        }
    }

    private func waitForAcknowledgement(of generation: UInt64) async throws -> NodeRecord {
        let id = nextWaiterID
        nextWaiterID += 1
        return try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { continuation in
                if Task.isCancelled {
                    continuation.resume(throwing: CancellationError())
                } else {
                    publishWaiters[id] = (generation, continuation)
                }
            }
        } onCancel: {
            Task { await self.cancelWaiter(id) }
        }
    }

    private func cancelWaiter(_ id: Int) {
        publishWaiters.removeValue(forKey: id)?.continuation.resume(throwing: CancellationError())
    }

    // MARK: Run loop

    /// Keeps the registry session alive until the task is cancelled.
    public func run() async {
        machine.start(at: clock.now())
        while !Task.isCancelled {
            let now = clock.now()
            switch machine.nextAction(at: now) {
            case .wait(let until):
                do { try await clock.sleep(until - now) } catch { break }
            case .connect:
                if machine.attempts > 0 { reconnectCount += 1 }
                machine.connecting(at: now)
                do {
                    try await session()
                } catch {
                    if Task.isCancelled { break }
                    let wait = machine.disconnected(at: clock.now(), random: random())
                    logger.warning(
                        "registry session failed; retrying",
                        metadata: [
                            "error": "\(error)", "retry-in": "\(wait)",
                        ])
                    setConnectionState(.unreachable(reason: "\(error)"))
                }
            case .none:
                // Only reachable if a session returned without throwing, which `session` never does.
                machine.start(at: now)
            }
        }
        machine.stop()
    }

    /// One session: publish, list, then watch and heartbeat until something fails. Always throws.
    private func session() async throws {
        if desiredRecord != nil { try await publishDesired() }
        let snapshot = try await registry.list()
        replacePeers(with: snapshot.records)
        machine.connected(at: clock.now())
        setConnectionState(.connected)
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await self.watchLoop(from: snapshot.revision) }
            group.addTask { try await self.heartbeatLoop() }
            defer { group.cancelAll() }
            try await group.next()
        }
        throw RegistryError.watchEnded
    }

    private func watchLoop(from revision: Int64) async throws {
        var revision = revision
        while true {
            var resync = false
            for try await event in registry.watch(after: revision) {
                switch event {
                case .put(let record, let eventRevision):
                    revision = eventRevision
                    watchEventCount += 1
                    apply(put: record)
                case .deleted(let name, let eventRevision):
                    revision = eventRevision
                    watchEventCount += 1
                    try apply(deletionOf: name)
                case .resyncRequired:
                    resync = true
                }
                if resync { break }
            }
            guard resync else { throw RegistryError.watchEnded }
            resyncCount += 1
            let snapshot = try await registry.list()
            replacePeers(with: snapshot.records)
            revision = snapshot.revision
        }
    }

    private func heartbeatLoop() async throws {
        let period = leaseTTL / 3
        while true {
            try await clock.sleep(period)
            if desiredRecord != nil { try await registry.heartbeat(name: nodeName) }
        }
    }

    // MARK: Peer set

    private func apply(put record: NodeRecord) {
        if record.name == nodeName { return }
        guard peers[record.name] != record else { return }
        peers[record.name] = record
        send(.peers(peers))
    }

    private func apply(deletionOf name: String) throws {
        if name == nodeName {
            // Our lease expired or an admin removed us: reconnect, which publishes the record again.
            if desiredRecord != nil { throw RegistryError.notFound("own record \(name) was deleted by the registry") }
            return
        }
        guard peers.removeValue(forKey: name) != nil else { return }
        send(.peers(peers))
    }

    private func replacePeers(with records: [NodeRecord]) {
        var fresh: [String: NodeRecord] = [:]
        for record in records where record.name != nodeName { fresh[record.name] = record }
        peers = fresh
        send(.peers(peers))
    }

    private func setConnectionState(_ state: ConnectionState) {
        guard state != connectionState else { return }
        connectionState = state
        send(.connection(state))
    }

    private func send(_ update: Update) {
        viewVersion += 1
        updatesContinuation.yield(update)
    }

    // MARK: Coalesced views

    /// The peers and the connection state at one moment, and how many updates had been sent by then.
    public struct View: Sendable {
        public var version: UInt64
        public var peers: [String: NodeRecord]
        public var connectionState: ConnectionState
    }

    /// The current view.
    public func view() -> View {
        View(version: viewVersion, peers: peers, connectionState: connectionState)
    }

    /// The current view after each change, coalesced: a consumer that falls behind gets one view for all the
    /// updates queued meanwhile, not one per update. The agent needs that: it handles a view in one pass over
    /// every peer, and a rotation across N nodes brings a few updates per node, so a view per update would cost
    /// O(N²) per rotation. It reads `updates`: a client feeds one consumer of either, not both.
    public nonisolated var views: Views { Views(client: self) }

    /// `updates` coalesced: a consumer that falls behind gets the latest peer set, not every intermediate one.
    public struct Views: AsyncSequence {
        let client: RegistryClient

        /// Yields the latest view each time the consumer asks.
        public struct AsyncIterator: AsyncIteratorProtocol {
            var updates: AsyncStream<Update>.Iterator
            let client: RegistryClient
            var handled: UInt64 = 0

            public mutating func next() async -> View? {
                while await updates.next() != nil {
                    let view = await client.view()
                    // Updates queued behind one already read are covered by its view.
                    if view.version > handled {
                        handled = view.version
                        return view
                    }
                }
                return nil
            }
        }

        public func makeAsyncIterator() -> AsyncIterator {
            AsyncIterator(updates: client.updates.makeAsyncIterator(), client: client)
        }
    }
}
