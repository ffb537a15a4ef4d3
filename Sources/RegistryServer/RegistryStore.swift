import GRDB
import Logging
import NIOCore
import NIOPosix
import Registry

#if canImport(FoundationEssentials)
    import FoundationEssentials
#else
    import Foundation
#endif

/// The embedded registry's state: records, revisions, event history and leases.
///
/// Every write is one SQLite transaction (GRDB `DatabasePool`, WAL mode) followed by the in-memory mirror
/// update and the wake-up of waiting watchers, all on the actor. The actor runs on its own NIO event loop
/// thread, so the short blocking SQLite calls never occupy the cooperative thread pool.
///
/// Persisted: records, the event history since the compaction point, the revision counter, the node ID
/// cursor. Not persisted: lease deadlines — on open every record gets a fresh lease of one TTL, so a
/// restart never expires nodes that had no chance to heartbeat.
actor RegistryStore {
    /// What `events(after:)` answers.
    enum WatchBatch: Sendable {
        case events([RegistryEvent], revision: Int64)
        /// The revision asked for is older than the retained history.
        case compacted(compactedRevision: Int64)
    }

    struct Live {
        var record: NodeRecord
        /// Monotonic: a wall-clock step neither expires nor prolongs leases.
        var leaseDeadline: ContinuousClock.Instant
        /// The sequence of the last accepted heartbeat since the record was stored or loaded (0: none).
        var heartbeatSequence: Int64 = 0
    }

    struct Waiter {
        var continuation: CheckedContinuation<Void, Never>
        var timer: Task<Void, Never>?
    }

    nonisolated let unownedExecutor: UnownedSerialExecutor
    let eventLoopGroup: MultiThreadedEventLoopGroup
    let database: DatabasePool
    let leaseTTL: Duration
    let historyLimit: Int
    let claims: ClaimPolicy
    let nowMillis: @Sendable () -> Int64
    let logger: Logger

    var live: [String: Live] = [:]
    /// The oldest credential generation accepted per node (absent: 0); raised by `revoke`.
    var credentialGenerations: [String: Int64] = [:]
    /// Revoked client certificates: revocation fingerprint (SHA-256 of the signed part, lowercase hex) → node.
    var revokedCertificates: [String: String] = [:]
    var revision: Int64 = 0
    var compactedRevision: Int64 = 0
    var nextNodeID: Int = 1
    /// Events after `compactedRevision`, in revision order.
    var history: [RegistryEvent] = []
    var waiters: [Int: Waiter] = [:]
    var nextWaiterID = 0
    var closing = false
    /// Open streaming watches: every change is encoded once here and the bytes queued on each stream.
    nonisolated let streams: WatchStreamHub

    /// Opens (or creates) `directory/registry.sqlite`.
    init(
        directory: String, leaseTTL: Duration, historyLimit: Int = 10_000, maxPendingStreamLines: Int = 4096,
        claims: ClaimPolicy = ClaimPolicy(),
        nowMillis: @escaping @Sendable () -> Int64 = RegistryStore.wallClockMillis,
        logger: Logger
    ) throws {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let loop = group.next()
        eventLoopGroup = group
        unownedExecutor = loop.executor.asUnownedSerialExecutor()
        self.leaseTTL = leaseTTL
        self.claims = claims
        self.historyLimit = max(1, historyLimit)
        self.nowMillis = nowMillis
        self.logger = logger
        self.streams = WatchStreamHub(maxPendingLines: maxPendingStreamLines)
        do {
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
            var configuration = GRDB.Configuration()
            // Another connection (a closing predecessor checkpointing the WAL, a backup tool) may hold the
            // lock for a moment: wait for it instead of failing.
            configuration.busyMode = .timeout(5)
            database = try DatabasePool(path: directory + "/registry.sqlite", configuration: configuration)
            try RegistryStore.migrate(database)
        } catch {
            try? group.syncShutdownGracefully()
            throw error
        }
        let decoder = JSONDecoder()
        let deadline = ContinuousClock.now + leaseTTL
        (credentialGenerations, revokedCertificates) = try Self.loadRevocations(database)
        let (loadedRecords, loadedEvents, meta) = try database.read { db in
            (
                try Row.fetchAll(db, sql: "SELECT body FROM records"),
                try Row.fetchAll(db, sql: "SELECT revision, name, body FROM events ORDER BY revision"),
                try Row.fetchAll(db, sql: "SELECT key, value FROM meta")
            )
        }
        for row in loadedRecords {
            let record = try decoder.decode(NodeRecord.self, from: Data((row["body"] as String).utf8))
            live[record.name] = Live(record: record, leaseDeadline: deadline)
        }
        for row in loadedEvents {
            let eventRevision: Int64 = row["revision"]
            if let body = row["body"] as String? {
                history.append(
                    .put(try decoder.decode(NodeRecord.self, from: Data(body.utf8)), revision: eventRevision))
            } else {
                history.append(.deleted(name: row["name"], revision: eventRevision))
            }
        }
        for row in meta {
            let value: Int64 = row["value"]
            switch row["key"] as String {
            case "revision": revision = value
            case "compacted": compactedRevision = value
            case "next_node_id": nextNodeID = Int(value)
            default: break
            }
        }
    }

    /// Answers every waiting watch now and makes later ones return at once (graceful shutdown).
    func beginShutdown() {
        closing = true
        wakeAll()
        streams.finishAll()
    }

    /// Closes the database (after `beginShutdown`), so a successor can open it at once.
    func closeDatabase() {
        do {
            try database.close()
        } catch {
            logger.error("closing the registry database failed", metadata: ["error": "\(error)"])
        }
    }

    /// Stops the store's thread. Call once, after the server stopped. (Nonisolated: the thread cannot
    /// shut itself down.)
    nonisolated func close() async {
        await beginShutdown()
        await closeDatabase()
        try? await eventLoopGroup.shutdownGracefully()
    }

    static let wallClockMillis: @Sendable () -> Int64 = { WriteSequence.wallClockMillis() }

    static func migrate(_ database: DatabasePool) throws {
        var migrator = DatabaseMigrator()
        migrator.registerMigration("v1") { db in
            try db.execute(
                sql: """
                    CREATE TABLE meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
                    CREATE TABLE records (name TEXT PRIMARY KEY, node_id INTEGER NOT NULL UNIQUE, body TEXT NOT NULL);
                    CREATE TABLE events (revision INTEGER PRIMARY KEY, name TEXT NOT NULL, body TEXT);
                    """)
        }
        migrator.registerMigration("v2: credential generations") { db in
            try db.execute(
                sql: "CREATE TABLE credential_generations (name TEXT PRIMARY KEY, generation INTEGER NOT NULL)")
        }
        migrator.registerMigration("v3: revoked certificates") { db in
            try db.execute(sql: "CREATE TABLE revoked_certificates (sha256 TEXT PRIMARY KEY, name TEXT NOT NULL)")
        }
        try migrator.migrate(database)
    }

    // MARK: Reads

    var currentRevision: Int64 { revision }

    func list() -> RegistrySnapshot {
        RegistrySnapshot(records: live.values.map(\.record).sorted { $0.name < $1.name }, revision: revision)
    }

    func record(named name: String) -> NodeRecord? { live[name]?.record }

    /// Events after `after`, at most `limit`, or `.compacted` if the history no longer reaches back there
    /// (or `after` is beyond the current revision: a revision from another history, e.g. a wiped data dir).
    func events(after: Int64, limit: Int = 1000) -> WatchBatch {
        guard after >= compactedRevision, after <= revision else {
            return .compacted(compactedRevision: compactedRevision)
        }
        let firstIndex = Int(after - compactedRevision)  // history[i] has revision compactedRevision + 1 + i
        guard firstIndex < history.count else { return .events([], revision: revision) }
        let slice = history[firstIndex..<min(history.count, firstIndex + limit)]
        return .events(Array(slice), revision: revision)
    }

    /// Returns once the revision exceeds `after`, or after `timeout`, or when the task is cancelled.
    func waitForChange(after: Int64, timeout: Duration) async {
        guard revision <= after, !closing, !Task.isCancelled else { return }
        let id = nextWaiterID
        nextWaiterID += 1
        await withTaskCancellationHandler {
            await withCheckedContinuation { continuation in
                let timer = Task { [weak self] in
                    try? await Task.sleep(for: timeout)
                    if Task.isCancelled { return }
                    await self?.wake(id)
                }
                waiters[id] = Waiter(continuation: continuation, timer: timer)
            }
        } onCancel: {
            Task { await self.wake(id) }
        }
    }

    func wake(_ id: Int) {
        guard let waiter = waiters.removeValue(forKey: id) else { return }
        waiter.timer?.cancel()
        waiter.continuation.resume()
    }

    func wakeAll() {
        let all = waiters
        waiters.removeAll()
        for waiter in all.values {
            waiter.timer?.cancel()
            waiter.continuation.resume()
        }
    }

    // MARK: Writes

    /// Stores a validated record, assigns its node ID, renews its lease. Throws `RegistryError` when no
    /// node ID is free.
    func publish(_ record: NodeRecord) throws -> NodeRecord {
        if let stored = live[record.name]?.record { try record.checkTransition(from: stored) }
        if let conflict = claims.conflict(of: record, among: live.values.lazy.map(\.record)) {
            throw RegistryError.rejected(
                status: conflict.reason == .prefixTooShort ? 422 : 409, message: conflict.message)
        }
        let now = nowMillis()
        var stored = record
        stored.nodeID = try assignNodeID(for: record)
        stored.heartbeatMillis = now
        let eventRevision = revision + 1
        // The revision this version of the record is stored at: peers acknowledge it through xfrmRevision.
        stored.revision = eventRevision
        let body = try RegistryStore.encode(stored)
        try database.write { db in
            try db.execute(sql: "DELETE FROM records WHERE name = ?", arguments: [stored.name])
            try db.execute(
                sql: "INSERT INTO records (name, node_id, body) VALUES (?, ?, ?)",
                arguments: [stored.name, Int(stored.nodeID), body])
            try db.execute(
                sql: "INSERT INTO events (revision, name, body) VALUES (?, ?, ?)",
                arguments: [eventRevision, stored.name, body])
            try RegistryStore.saveMeta(db, revision: eventRevision, nextNodeID: nextNodeID)
        }
        live[stored.name] = Live(record: stored, leaseDeadline: ContinuousClock.now + leaseTTL)
        append([.put(stored, revision: eventRevision)])
        return stored
    }

    /// Renews a live record's lease for a heartbeat with a larger `sequence` than the record's and the last
    /// heartbeat's. One not after the record's predates the last write (a heartbeat that raced a publish, or an
    /// old one replayed): answered without renewing, since that write renewed the lease. One between the two was
    /// already seen: refused (409). Throws `notFound` when the node has no live record.
    func heartbeat(name: String, sequence: Int64) throws {
        guard let current = live[name] else {
            throw RegistryError.notFound("no live record for node \(name); publish it again")
        }
        guard sequence > current.record.sequence else { return }
        guard sequence > current.heartbeatSequence else {
            throw RegistryError.rejected(
                status: 409,
                message:
                    "sequence: \(sequence) is not after \(current.heartbeatSequence): a replayed or out-of-order heartbeat of \(name)"
            )
        }
        live[name]!.heartbeatSequence = sequence
        live[name]!.leaseDeadline = ContinuousClock.now + leaseTTL
        live[name]!.record.heartbeatMillis = nowMillis()
    }

    /// Deletes a record (admin). Returns false when it did not exist.
    func delete(name: String) throws -> Bool {
        guard live[name] != nil else { return false }
        try remove([name])
        return true
    }

    /// Deletes every record whose lease ran out; returns their names.
    @discardableResult
    func expireLeases() throws -> [String] {
        let now = ContinuousClock.now
        let expired = live.filter { $0.value.leaseDeadline <= now }.keys.sorted()
        guard !expired.isEmpty else { return [] }
        try remove(expired)
        for name in expired { logger.info("lease expired", metadata: ["node": "\(name)"]) }
        return expired
    }

    /// Runs `expireLeases` every `interval` until cancelled.
    func runLeaseSweeper(interval: Duration) async {
        while !Task.isCancelled {
            do {
                try await Task.sleep(for: interval)
                try expireLeases()
            } catch is CancellationError {
                return
            } catch {
                logger.error("lease sweep failed", metadata: ["error": "\(error)"])
            }
        }
    }

    func remove(_ names: [String]) throws {
        let first = revision + 1
        try database.write { db in
            for (offset, name) in names.enumerated() {
                try db.execute(sql: "DELETE FROM records WHERE name = ?", arguments: [name])
                try db.execute(
                    sql: "INSERT INTO events (revision, name, body) VALUES (?, ?, NULL)",
                    arguments: [first + Int64(offset), name])
            }
            try RegistryStore.saveMeta(db, revision: first + Int64(names.count) - 1, nextNodeID: nextNodeID)
        }
        var events: [RegistryEvent] = []
        for (offset, name) in names.enumerated() {
            live[name] = nil
            events.append(.deleted(name: name, revision: first + Int64(offset)))
        }
        append(events)
    }

    /// Records committed events, then wakes the long polls and queues one encoded line on every stream.
    func append(_ events: [RegistryEvent]) {
        for event in events {
            if case .put(_, let r) = event { revision = r }
            if case .deleted(_, let r) = event { revision = r }
            history.append(event)
        }
        if history.count > historyLimit + historyLimit / 10 { compact() }
        wakeAll()
        broadcast(events)
    }

    /// Drops the oldest history beyond `historyLimit`; watchers asking for it get a resync answer.
    func compact() {
        let drop = history.count - historyLimit
        let newCompacted = compactedRevision + Int64(drop)
        do {
            try database.write { db in
                try db.execute(sql: "DELETE FROM events WHERE revision <= ?", arguments: [newCompacted])
                try db.execute(
                    sql: "INSERT OR REPLACE INTO meta (key, value) VALUES ('compacted', ?)", arguments: [newCompacted])
            }
            history.removeFirst(drop)
            compactedRevision = newCompacted
        } catch {
            logger.error("history compaction failed", metadata: ["error": "\(error)"])
        }
    }

    /// A live node keeps its ID; a requested ID is honoured when no live node holds it; otherwise the next
    /// free ID after the cursor, so a freed ID is reused as late as possible.
    func assignNodeID(for record: NodeRecord) throws -> UInt16 {
        if let current = live[record.name] { return current.record.nodeID }
        let taken = Set(live.values.map(\.record.nodeID))
        if record.nodeID != 0, !taken.contains(record.nodeID) { return record.nodeID }
        guard taken.count < Int(UInt16.max) else {
            throw RegistryError.rejected(status: 507, message: "no free node ID")
        }
        var candidate = nextNodeID
        while taken.contains(UInt16(candidate)) { candidate = candidate >= Int(UInt16.max) ? 1 : candidate + 1 }
        nextNodeID = candidate >= Int(UInt16.max) ? 1 : candidate + 1
        return UInt16(candidate)
    }

    static func saveMeta(_ db: Database, revision: Int64, nextNodeID: Int) throws {
        try db.execute(
            sql: "INSERT OR REPLACE INTO meta (key, value) VALUES ('revision', ?), ('next_node_id', ?)",
            arguments: [revision, nextNodeID])
    }

    static func encode(_ record: NodeRecord) throws -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = .sortedKeys
        return String(decoding: try encoder.encode(record), as: UTF8.self)
    }
}
