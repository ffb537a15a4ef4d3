import AsyncHTTPClient
import Logging
import Registry

#if canImport(FoundationEssentials)
    import FoundationEssentials
#else
    import Foundation
#endif

/// The node registry kept in etcd 3.4, spoken through its JSON gateway.
///
/// Each node has one lease (TTL ``EtcdConfiguration/leaseTTL``); its record
/// (`<prefix>nodes/<name>`) and its node-ID claim (`<prefix>ids/<id>`) are bound to it, so both
/// vanish together when the node stops heartbeating. Node IDs are claimed with a
/// compare-and-create transaction, which keeps them unique among live nodes however many nodes
/// register at once. See docs/registry-etcd.md.
public actor EtcdRegistry: NodeRegistry {
    public nonisolated let configuration: EtcdConfiguration
    nonisolated let client: EtcdGatewayClient
    nonisolated let keyspace: EtcdKeyspace
    nonisolated let codec: EtcdRecordCodec
    private nonisolated let logger: Logger

    /// Lease of each node published through this instance.
    private var leases: [String: Int64] = [:]
    /// Lease grants in flight, so overlapping calls for one node share one lease.
    private var grants: [String: Task<Int64, any Error>] = [:]
    /// Last stored record of each node, republished when its lease is found gone.
    private var published: [String: NodeRecord] = [:]

    /// Stamps every record written through this instance (see `WriteSequence`).
    private let writeSequence = WriteSequence()

    /// Node-ID transactions lost to concurrent registrations before giving up.
    static let maxClaimAttempts = 64

    /// - Parameter httpClient: the client to use; by default a process-wide client tuned for etcd
    ///   (immediate failover, no read timeout, many connections per endpoint for watches).
    public init(configuration: EtcdConfiguration, httpClient: HTTPClient? = nil) throws(EtcdRegistryError) {
        try configuration.validate()
        self.configuration = configuration
        keyspace = EtcdKeyspace(prefix: configuration.prefix)
        codec = EtcdRecordCodec(keyspace: keyspace)
        logger = configuration.logger
        client = EtcdGatewayClient(
            endpoints: configuration.endpoints,
            http: httpClient
                ?? (configuration.tls.map { EtcdGatewayClient.processLifetimeHTTPClient(tls: $0) }
                    ?? EtcdGatewayClient.sharedHTTPClient),
            requestTimeout: configuration.requestTimeout, maxResponseBytes: configuration.maxResponseBytes,
            logger: configuration.logger)
    }

    // MARK: NodeRegistry

    public func publish(_ record: NodeRecord) async throws -> NodeRecord {
        try EtcdKeyspace.validate(name: record.name)
        var record = record
        record.sequence = writeSequence.next(after: max(record.sequence, published[record.name]?.sequence ?? 0))
        let lease = try await currentLease(for: record.name)
        let stored: NodeRecord
        do {
            stored = try await store(record, lease: lease)
        } catch let error as EtcdRegistryError where error.isLeaseNotFound {
            // The lease expired between two calls: take a new one and store again, once.
            logger.notice("etcd lease gone, granting a new one", metadata: ["node": "\(record.name)"])
            forget(lease: lease, of: record.name)
            stored = try await store(record, lease: try await currentLease(for: record.name))
        }
        published[record.name] = stored
        return stored
    }

    public func heartbeat(name: String) async throws {
        guard published[name] != nil else { throw EtcdRegistryError.notPublished(name: name) }
        if let lease = leases[name] {
            let answer = try await client.call(
                "/v3/lease/keepalive", EtcdWire.LeaseIDRequest(ID: String(lease)),
                as: EtcdWire.LeaseKeepAliveEnvelope.self)
            if let ttl = EtcdWire.int64(answer.result?.TTL), ttl > 0 { return }
            // etcd answers TTL 0 for a lease it no longer has: the record and ID claim are gone.
            logger.warning("etcd lease expired, registering again", metadata: ["node": "\(name)"])
            forget(lease: lease, of: name)
        }
        // Re-read after the await: a `withdraw` meanwhile must not be undone.
        guard let record = published[name] else { return }
        _ = try await publish(record)
    }

    public nonisolated func list() async throws -> RegistrySnapshot {
        let recordsPrefix = Array(keyspace.recordsPrefix.utf8)
        let response = try await client.call(
            "/v3/kv/range",
            EtcdWire.RangeRequest(
                key: EtcdWire.base64(recordsPrefix),
                range_end: EtcdWire.base64(EtcdKeyspace.rangeEnd(ofPrefix: recordsPrefix))),
            as: EtcdWire.RangeResponse.self)
        guard let revision = EtcdWire.int64(response.header?.revision), revision > 0 else {
            throw EtcdRegistryError.malformedResponse(
                endpoint: client.endpoints.joined(separator: ","), path: "/v3/kv/range", reason: "no header revision")
        }
        var records: [NodeRecord] = []
        for kv in response.kvs ?? [] {
            do {
                records.append(try codec.decode(kv))
            } catch {
                logger.warning("skipping invalid node record in etcd", metadata: ["problem": "\(error)"])
            }
        }
        return RegistrySnapshot(records: records, revision: revision)
    }

    public nonisolated func watch(after revision: Int64) -> AsyncThrowingStream<RegistryEvent, any Error> {
        let (stream, continuation) = AsyncThrowingStream.makeStream(of: RegistryEvent.self)
        let recordsPrefix = Array(keyspace.recordsPrefix.utf8)
        let request = EtcdWire.WatchRequest(
            create_request: .init(
                key: EtcdWire.base64(recordsPrefix),
                range_end: EtcdWire.base64(EtcdKeyspace.rangeEnd(ofPrefix: recordsPrefix)),
                start_revision: String(max(revision, 0) + 1)))
        let task = Task { [client, codec, logger, maxLine = configuration.maxResponseBytes] in
            do {
                let (endpoint, body) = try await client.openStream("/v3/watch", request)
                let translator = EtcdWatchTranslator(codec: codec, endpoint: endpoint, logger: logger)
                var splitter = LineSplitter(maxLineBytes: maxLine)
                for try await chunk in body {
                    splitter.append(chunk)
                    while let line = try splitter.nextLine() {
                        switch try translator.translate(line: line) {
                        case .events(let events):
                            for event in events { continuation.yield(event) }
                        case .resyncRequired:
                            continuation.yield(.resyncRequired)
                            continuation.finish()
                            return
                        }
                    }
                }
                continuation.finish(throwing: EtcdRegistryError.watchConnectionLost(endpoint: endpoint))
            } catch {
                continuation.finish(throwing: error)
            }
        }
        continuation.onTermination = { _ in task.cancel() }
        return stream
    }

    // MARK: Beyond the protocol

    /// Revokes the node's lease: its record and node ID disappear at once (graceful shutdown).
    public func withdraw(name: String) async throws {
        published[name] = nil
        guard let lease = leases.removeValue(forKey: name) else { return }
        do {
            _ = try await client.call(
                "/v3/lease/revoke", EtcdWire.LeaseIDRequest(ID: String(lease)), as: EtcdWire.Empty.self)
        } catch let error as EtcdRegistryError where error.isLeaseNotFound {
            // Already expired: nothing left to remove.
        }
    }

    // MARK: Leases

    private func currentLease(for name: String) async throws -> Int64 {
        if let lease = leases[name] { return lease }
        if let grant = grants[name] { return try await grant.value }
        let grant = Task { [client, ttl = configuration.leaseTTLSeconds] in
            let answer = try await client.call(
                "/v3/lease/grant", EtcdWire.LeaseGrantRequest(TTL: String(ttl)), as: EtcdWire.LeaseGrantResponse.self)
            guard let id = EtcdWire.int64(answer.ID), id != 0 else {
                throw EtcdRegistryError.malformedResponse(
                    endpoint: client.endpoints.joined(separator: ","), path: "/v3/lease/grant",
                    reason: answer.error.map { "grant refused: \($0)" } ?? "no lease ID")
            }
            return id
        }
        grants[name] = grant
        defer { grants[name] = nil }
        let lease = try await grant.value
        leases[name] = lease
        return lease
    }

    private func forget(lease: Int64, of name: String) {
        if leases[name] == lease { leases[name] = nil }
    }

    // MARK: Node-ID claim

    /// Stores `record` under a node ID it holds or claims, bound to `lease`; returns what was stored.
    private func store(_ record: NodeRecord, lease: Int64) async throws -> NodeRecord {
        let name = record.name
        var owners = try await idOwners()
        let held = owners.filter { $0.value == name }.keys.sorted()
        let range = configuration.nodeIDs

        // Candidates in order: the ID asked for if this node holds it, any other ID it holds,
        // the ID asked for if free, then free IDs from the name's hash slot upwards.
        var preferred: [UInt16] = []
        if record.nodeID != 0, held.contains(record.nodeID) { preferred.append(record.nodeID) }
        preferred += held.filter { $0 != record.nodeID && range.contains($0) }
        if record.nodeID != 0, range.contains(record.nodeID), owners[record.nodeID] == nil {
            preferred.append(record.nodeID)
        }
        let probe = NodeIDProbe(name: name, range: range)
        let candidates = sequence(state: 0) { index -> UInt16? in
            defer { index += 1 }
            if index < preferred.count { return preferred[index] }
            return index - preferred.count < probe.count ? probe.id(at: index - preferred.count) : nil
        }

        var attempts = 0
        for id in candidates {
            // A lost race re-reads the owner: another node → next candidate; this very node (an
            // overlapping publish of it won) → claim again as held; nobody → try again.
            while owners[id] == nil || owners[id] == name {
                let alreadyHeld = owners[id] == name
                var stored = record
                stored.nodeID = id
                stored.heartbeatMillis = Int64((Date().timeIntervalSince1970 * 1000).rounded())
                switch try await claim(id, for: stored, lease: lease, alreadyHeld: alreadyHeld) {
                case .claimed(let revision):
                    let stale = held.filter { $0 != id }
                    if !stale.isEmpty { await release(stale, of: name) }
                    stored.revision = revision
                    return stored
                case .lost(let currentOwner):
                    owners[id] = currentOwner
                    attempts += 1
                    logger.debug(
                        "etcd node ID changed hands concurrently", metadata: ["node": "\(name)", "nodeID": "\(id)"])
                    if attempts >= Self.maxClaimAttempts {
                        throw EtcdRegistryError.allocationContention(name: name, attempts: attempts)
                    }
                }
            }
        }
        throw EtcdRegistryError.nodeIDsExhausted(range: range)
    }

    private enum ClaimOutcome {
        /// Stored; the revision of the transaction, which is the record's `mod_revision`.
        case claimed(revision: Int64)
        /// The ID's key changed under us; its owner now (nil if it was deleted meanwhile).
        case lost(currentOwner: String?)
    }

    /// One transaction: if `<prefix>ids/<id>` is absent (or still ours when `alreadyHeld`), put it
    /// and the record, both on `lease`; otherwise read who owns it.
    /// The records are read first and `record` is checked against them (claims, key-ID order); the transaction
    /// only succeeds if no record was written since, so two nodes cannot both claim one prefix.
    private func claim(
        _ id: UInt16, for record: NodeRecord, lease: Int64, alreadyHeld: Bool
    ) async throws -> ClaimOutcome {
        let checkedAt = try await checkClaims(of: record)
        let idKey = EtcdWire.base64(keyspace.idKey(id))
        let owner = EtcdWire.base64(record.name)
        let leaseText = String(lease)
        let recordsPrefix = Array(keyspace.recordsPrefix.utf8)
        let txn = EtcdWire.TxnRequest(
            compare: [
                alreadyHeld ? .valueEquals(idKey, owner) : .absent(idKey),
                .unmodifiedSince(
                    EtcdWire.base64(recordsPrefix),
                    rangeEnd: EtcdWire.base64(EtcdKeyspace.rangeEnd(ofPrefix: recordsPrefix)),
                    revision: checkedAt),
            ],
            success: [
                .put(.init(key: idKey, value: owner, lease: leaseText)),
                .put(
                    .init(
                        key: EtcdWire.base64(keyspace.recordKey(record.name)), value: try codec.encode(record),
                        lease: leaseText)),
            ],
            failure: [.range(.init(key: idKey))])
        let answer = try await client.call("/v3/kv/txn", txn, as: EtcdWire.TxnResponse.self)
        if answer.succeeded == true {
            guard let revision = EtcdWire.int64(answer.header?.revision), revision > 0 else {
                throw EtcdRegistryError.malformedResponse(
                    endpoint: client.endpoints.joined(separator: ","), path: "/v3/kv/txn", reason: "no header revision")
            }
            return .claimed(revision: revision)
        }
        let kv = answer.responses?.first?.response_range?.kvs?.first
        return .lost(
            currentOwner: kv.flatMap { EtcdWire.bytes(base64: $0.value) }.map { String(decoding: $0, as: UTF8.self) })
    }

    /// Refuses `record` when the stored records make it invalid (`ClaimPolicy`, `checkTransition`); returns the
    /// revision the check was made at.
    private func checkClaims(of record: NodeRecord) async throws -> Int64 {
        let snapshot = try await list()
        do {
            if let stored = snapshot.records.first(where: { $0.name == record.name }) {
                try record.checkTransition(from: stored)
            }
        } catch {
            throw EtcdRegistryError.refused(error)
        }
        if let conflict = configuration.claims.conflict(of: record, among: snapshot.records) {
            throw EtcdRegistryError.refused(
                .rejected(status: conflict.reason == .prefixTooShort ? 422 : 409, message: conflict.message))
        }
        return snapshot.revision
    }

    /// Deletes ID claims this node no longer uses (only while they still name it).
    private func release(_ ids: [UInt16], of name: String) async {
        for id in ids {
            let idKey = EtcdWire.base64(keyspace.idKey(id))
            let txn = EtcdWire.TxnRequest(
                compare: [.valueEquals(idKey, EtcdWire.base64(name))], success: [.delete(.init(key: idKey))],
                failure: [])
            do {
                _ = try await client.call("/v3/kv/txn", txn, as: EtcdWire.TxnResponse.self)
            } catch {
                logger.warning(
                    "could not release a node ID; it expires with the node's old lease",
                    metadata: ["node": "\(name)", "nodeID": "\(id)", "error": "\(error)"])
            }
        }
    }

    /// Who holds each node ID now (`<prefix>ids/<id>` → name).
    private func idOwners() async throws -> [UInt16: String] {
        let idsPrefix = Array(keyspace.idsPrefix.utf8)
        let response = try await client.call(
            "/v3/kv/range",
            EtcdWire.RangeRequest(
                key: EtcdWire.base64(idsPrefix), range_end: EtcdWire.base64(EtcdKeyspace.rangeEnd(ofPrefix: idsPrefix))),
            as: EtcdWire.RangeResponse.self)
        var owners: [UInt16: String] = [:]
        for kv in response.kvs ?? [] {
            guard let key = EtcdWire.bytes(base64: kv.key), let id = keyspace.nodeID(fromIDKey: key),
                let value = EtcdWire.bytes(base64: kv.value)
            else {
                logger.warning("skipping malformed node-ID key in etcd", metadata: ["key": "\(kv.key.prefix(80))"])
                continue
            }
            owners[id] = String(decoding: value, as: UTF8.self)
        }
        return owners
    }
}
