/// A `NodeRegistry` held in memory, for tests of the registry client and of the agent.
///
/// It follows the registry contract (revisions, ordered watches with backlog replay, node IDs unique among
/// live records, resync after compaction) and adds fault injection: make the next calls fail, end every open
/// watch, compact the history, delete or expire records as an admin would.
public actor InMemoryNodeRegistry: NodeRegistry {
    private var records: [String: NodeRecord] = [:]
    private var revision: Int64 = 0
    /// Events after `compactedRevision`, in revision order.
    private var history: [(revision: Int64, event: RegistryEvent)] = []
    private var compactedRevision: Int64 = 0
    private var watchers: [Int: AsyncThrowingStream<RegistryEvent, any Error>.Continuation] = [:]
    private var nextWatcherID = 0
    private var failuresToInject = 0
    private var nextNodeID: UInt16 = 1

    /// Calls received, for assertions.
    public private(set) var publishCount = 0
    public private(set) var heartbeatCount = 0
    public private(set) var listCount = 0
    public private(set) var watchCount = 0

    public init() {}

    // MARK: NodeRegistry

    public func publish(_ record: NodeRecord) async throws -> NodeRecord {
        publishCount += 1
        try injectFailure("publish")
        try record.validate()
        return store(record)
    }

    public func heartbeat(name: String) async throws {
        heartbeatCount += 1
        try injectFailure("heartbeat")
        guard records[name] != nil else { throw RegistryError.notFound("no live record for \(name)") }
    }

    public func list() async throws -> RegistrySnapshot {
        listCount += 1
        try injectFailure("list")
        return RegistrySnapshot(records: records.values.sorted { $0.name < $1.name }, revision: revision)
    }

    public nonisolated func watch(after revision: Int64) -> AsyncThrowingStream<RegistryEvent, any Error> {
        let (stream, continuation) = AsyncThrowingStream.makeStream(of: RegistryEvent.self)
        Task { await self.register(continuation, after: revision) }
        return stream
    }

    // MARK: Admin operations and fault injection

    /// Stores a record as if its node had published it (no fault injection, not counted).
    @discardableResult
    public func seed(_ record: NodeRecord) -> NodeRecord {
        store(record)
    }

    /// Deletes a record as an admin would; watchers see `.deleted`. Returns false if it did not exist.
    @discardableResult
    public func delete(name: String) -> Bool {
        guard records.removeValue(forKey: name) != nil else { return false }
        append(.deleted(name: name, revision: nextRevision()))
        return true
    }

    /// Expires a node's lease: the same announcement as an admin deletion.
    @discardableResult
    public func expireLease(of name: String) -> Bool {
        delete(name: name)
    }

    /// Makes the next `count` calls (publish, heartbeat, list, or the start of a watch) fail.
    public func failNextCalls(_ count: Int) {
        failuresToInject = count
    }

    /// Ends every open watch, with an error (a lost connection) or cleanly when `error` is nil.
    public func endWatches(throwing error: (any Error)? = RegistryError.injectedFailure("watch connection lost")) {
        let open = watchers
        watchers.removeAll()
        for continuation in open.values { continuation.finish(throwing: error) }
    }

    /// Drops the history: watches from an older revision get `.resyncRequired`.
    public func compact() {
        compactedRevision = revision
        history.removeAll()
    }

    /// Compacts the history and answers every open watch with `.resyncRequired` (as etcd does when a
    /// watcher falls behind compaction).
    public func forceResync() {
        compact()
        let open = watchers
        watchers.removeAll()
        for continuation in open.values {
            continuation.yield(.resyncRequired)
            continuation.finish()
        }
    }

    /// The number of watches currently open.
    public var openWatchCount: Int { watchers.count }

    /// The current revision.
    public var currentRevision: Int64 { revision }

    /// The stored record of `name`, if live.
    public func record(named name: String) -> NodeRecord? { records[name] }

    // MARK: Internals

    private func injectFailure(_ operation: String) throws {
        guard failuresToInject > 0 else { return }
        failuresToInject -= 1
        throw RegistryError.injectedFailure(operation)
    }

    private func store(_ record: NodeRecord) -> NodeRecord {
        var stored = record
        stored.nodeID = assignNodeID(for: record)
        stored.revision = nextRevision()
        records[stored.name] = stored
        append(.put(stored, revision: stored.revision))
        return stored
    }

    /// Keeps a live node's ID; honours a requested free ID; otherwise takes the next free one round-robin.
    private func assignNodeID(for record: NodeRecord) -> UInt16 {
        if let live = records[record.name] { return live.nodeID }
        let taken = Set(records.values.map(\.nodeID))
        if record.nodeID != 0, !taken.contains(record.nodeID) { return record.nodeID }
        var candidate = nextNodeID
        while taken.contains(candidate) { candidate = candidate == UInt16.max ? 1 : candidate + 1 }
        nextNodeID = candidate == UInt16.max ? 1 : candidate + 1
        return candidate
    }

    private func nextRevision() -> Int64 {
        revision += 1
        return revision
    }

    private func append(_ event: RegistryEvent) {
        let eventRevision: Int64
        switch event {
        case .put(_, let r), .deleted(_, let r): eventRevision = r
        case .resyncRequired: return
        }
        history.append((eventRevision, event))
        for continuation in watchers.values { continuation.yield(event) }
    }

    private func register(
        _ continuation: AsyncThrowingStream<RegistryEvent, any Error>.Continuation, after revision: Int64
    ) {
        watchCount += 1
        do {
            try injectFailure("watch")
        } catch {
            continuation.finish(throwing: error)
            return
        }
        if revision < compactedRevision {
            continuation.yield(.resyncRequired)
            continuation.finish()
            return
        }
        for entry in history where entry.revision > revision { continuation.yield(entry.event) }
        let id = nextWatcherID
        nextWatcherID += 1
        watchers[id] = continuation
        continuation.onTermination = { _ in Task { await self.unregister(id) } }
    }

    private func unregister(_ id: Int) {
        watchers[id] = nil
    }
}
