import Foundation
#if canImport(Glibc)
import Glibc
#endif
import IPsecPrimitives
import Registry
import Testing
@testable import RegistryEtcd
import RegistryServer

/// Against a real etcd 3.4 started per test (see EtcdTestServer).
@Suite(.serialized, .enabled(if: EtcdTestServer.isAvailable, EtcdTestServer.skipReason))
struct EtcdRegistryTests {
    static func record(_ name: String, spi: UInt8? = nil, nodeID: UInt16 = 0) -> NodeRecord {
        let own = ownClaims(of: name)
        guard case .v4(let n) = own.underlay else { fatalError() }
        return NodeRecord(
            name: name, nodeID: nodeID, ipv4: own.underlay, ipv6: .v6(0xFD00 << 112 | UInt128(n & 0xFFFF)),
            podCIDRs: [own.pods], bootID: "boot-\(name)", spi: spi.flatMap { KeyID($0) },
            encryptSpi: spi.flatMap { KeyID($0) }, keyFingerprint: "fp-\(name)", xfrmRevision: 7)
    }

    /// Collects the next `count` events of `stream`, failing after `timeout`.
    static func next(
        _ count: Int, of stream: AsyncThrowingStream<RegistryEvent, any Error>, timeout: Duration = .seconds(20)
    ) async throws -> [RegistryEvent] {
        try await withThrowingTaskGroup(of: [RegistryEvent]?.self) { group in
            group.addTask {
                var events: [RegistryEvent] = []
                for try await event in stream {
                    events.append(event)
                    if events.count == count { break }
                }
                return events
            }
            group.addTask {
                try await Task.sleep(for: timeout)
                return nil
            }
            let first = try await group.next()!
            group.cancelAll()
            guard let events = first else {
                Issue.record("timed out waiting for \(count) watch events")
                return []
            }
            return events
        }
    }

    /// The etcd backend holds the embedded registry's rules: no record claiming another live node's pod CIDRs
    /// or underlay, no default route or too-broad prefix, no key ID going back; nothing is written.
    @Test func refusesForeignClaimsAndKeyIDsGoingBack() async throws {
        try await EtcdTestServer.with { server in
            let registry = try server.registry()
            let a = try await registry.publish(Self.record("node-a", spi: 3))
            func refusal(_ record: NodeRecord) async -> String? {
                do {
                    _ = try await registry.publish(record)
                    return nil
                } catch {
                    return "\(error)"
                }
            }
            var b = Self.record("node-b")
            b.podCIDRs = [IPPrefix(address: a.podCIDRs[0].address, length: 25)!]
            #expect(await refusal(b)?.contains("overlaps \(a.podCIDRs[0]), which belongs to node node-a") == true)
            b = Self.record("node-b")
            b.ipv6 = a.ipv6
            #expect(await refusal(b)?.contains("is the underlay address of node node-a") == true)
            b = Self.record("node-b")
            b.podCIDRs = [IPPrefix("0.0.0.0/0")!]
            #expect(await refusal(b)?.contains("0.0.0.0/0 is a default route") == true)
            var back = Self.record("node-a", spi: 2)
            back.nodeID = a.nodeID
            #expect(await refusal(back)?.contains("would move node-a back from key 3") == true)
            let snapshot = try await registry.list()
            #expect(snapshot.records.map(\.name) == ["node-a"])
            #expect(snapshot.records.first?.spi == KeyID(3))
            #expect(await refusal(Self.record("node-b")) == nil)
        }
    }

    /// etcd run the way an operator secures it (server certificate, --client-cert-auth): the registry works over
    /// https with a client certificate; without one, or trusting another CA, it is refused.
    @Test func worksOverMutualTLSAndIsRefusedWithoutTheRightCertificates() async throws {
        try await EtcdTestServer.with(tls: true) { server in
            #expect(server.clientURL.hasPrefix("https://"))
            let registry = try server.registry()
            _ = try await registry.publish(Self.record("node-a", spi: 1))
            #expect(try await registry.list().records.map(\.name) == ["node-a"])

            let dir = server.directory.path
            var noCertificate = EtcdConfiguration(endpoints: [server.clientURL], prefix: "/ipsec-agent-test/", requestTimeout: .seconds(3))
            noCertificate.tls = try RegistryTLS.client(ca: "\(dir)/ca.pem", certificate: nil, key: nil)
            await #expect(throws: (any Error).self) { try await EtcdRegistry(configuration: noCertificate).list() }

            let stranger = try RegistryCertificateAuthority()
            try stranger.certificatePEM.write(toFile: "\(dir)/other-ca.pem", atomically: true, encoding: .utf8)
            var wrongCA = noCertificate
            wrongCA.tls = try RegistryTLS.client(ca: "\(dir)/other-ca.pem", certificate: "\(dir)/client.pem", key: "\(dir)/client-key.pem")
            await #expect(throws: (any Error).self) { try await EtcdRegistry(configuration: wrongCA).list() }
        }
    }

    @Test func publishAndListRoundTrip() async throws {
        try await EtcdTestServer.with { server in
            let registry = try server.registry()
            let stored = try await registry.publish(Self.record("node-a", spi: 3))
            #expect(stored.nodeID != 0)
            #expect(stored.heartbeatMillis > 0)
            #expect(stored.revision > 0)
            var expected = Self.record("node-a", spi: 3)
            expected.nodeID = stored.nodeID
            expected.heartbeatMillis = stored.heartbeatMillis
            expected.revision = stored.revision
            expected.sequence = stored.sequence
            #expect(stored.sequence > 0)
            #expect(stored == expected)

            let first = try await registry.list()
            #expect(first.records == [stored])  // including `revision`: the record's mod_revision
            #expect(first.revision == stored.revision)

            // An update keeps the node's ID, even when the caller does not repeat it.
            let updated = try await registry.publish(Self.record("node-a", spi: 4))
            #expect(updated.nodeID == stored.nodeID)
            #expect(updated.revision > stored.revision)
            #expect(updated.spi == KeyID(4))
            // A free ID asked for is granted.
            let other = try await registry.publish(Self.record("node-b", nodeID: 4242))
            #expect(other.nodeID == 4242)

            let second = try await registry.list()
            #expect(second.revision > first.revision)
            #expect(second.records.sorted { $0.name < $1.name } == [updated, other])

            // A second process (another registry instance) sees the same records.
            let reader = try server.registry()
            #expect(try await reader.list().records.count == 2)
        }
    }

    @Test func nodeIDsStayUniqueUnderConcurrentRegistration() async throws {
        try await EtcdTestServer.with { server in
            // A range exactly as large as the number of nodes forces them to race for IDs.
            let range: ClosedRange<UInt16> = 1...24
            let names = (0..<24).map { "node-\($0)" }
            let stored = try await withThrowingTaskGroup(of: NodeRecord.self) { group in
                for name in names {
                    let registry = try server.registry(nodeIDs: range)
                    group.addTask { try await registry.publish(Self.record(name)) }
                }
                return try await group.reduce(into: []) { $0.append($1) }
            }
            #expect(Set(stored.map(\.name)) == Set(names))
            #expect(Set(stored.map(\.nodeID)) == Set(range))

            let listed = try await server.registry().list().records
            #expect(Dictionary(uniqueKeysWithValues: listed.map { ($0.name, $0.nodeID) })
                == Dictionary(uniqueKeysWithValues: stored.map { ($0.name, $0.nodeID) }))

            await #expect(throws: EtcdRegistryError.nodeIDsExhausted(range: range)) {
                try await server.registry(nodeIDs: range).publish(Self.record("one-too-many"))
            }
        }
    }

    @Test func overlappingPublishesOfOneNodeHoldOneID() async throws {
        try await EtcdTestServer.with { server in
            let registry = try server.registry(nodeIDs: 1...8)
            let stored = try await withThrowingTaskGroup(of: NodeRecord?.self) { group in
                for revision in Int64(1)...6 {
                    // One key ID throughout: overlapping publishes with different IDs could land out of order,
                    // which the key-ID rule refuses.
                    var record = Self.record("same", spi: 3)
                    record.xfrmRevision = revision
                    // A publish that lands after a later-stamped one is refused as out of order; that is fine.
                    group.addTask {
                        do { return try await registry.publish(record) } catch EtcdRegistryError.refused(.rejected(409, let m)) where m.hasPrefix("sequence") { return nil }
                    }
                }
                return try await group.reduce(into: [NodeRecord]()) { if let r = $1 { $0.append(r) } }
            }
            #expect(!stored.isEmpty)
            #expect(Set(stored.map(\.nodeID)).count == 1)
            let ids = try await server.gateway.call(
                "/v3/kv/range",
                EtcdWire.RangeRequest(
                    key: EtcdWire.base64(registry.keyspace.idsPrefix),
                    range_end: EtcdWire.base64(EtcdKeyspace.rangeEnd(ofPrefix: Array(registry.keyspace.idsPrefix.utf8)))),
                as: EtcdWire.RangeResponse.self)
            #expect(ids.kvs?.count == 1)
            #expect(try await registry.list().records.map(\.nodeID) == [stored[0].nodeID])
        }
    }

    @Test func watchDeliversChangesInRevisionOrder() async throws {
        try await EtcdTestServer.with { server in
            let registry = try server.registry()
            let start = try await registry.list().revision
            let stream = registry.watch(after: start)

            var expected: [String] = []
            _ = try await registry.publish(Self.record("b", spi: 1))
            expected.append("put b 1")
            for spi in UInt8(1)...10 {
                _ = try await registry.publish(Self.record("a", spi: spi))
                expected.append("put a \(spi)")
            }
            try await registry.withdraw(name: "b")
            expected.append("deleted b")

            let events = try await Self.next(expected.count, of: stream)
            var revisions: [Int64] = []
            var seen: [String] = []
            for event in events {
                switch event {
                case .put(let record, let revision):
                    seen.append("put \(record.name) \(record.spi?.description ?? "-")")
                    revisions.append(revision)
                    #expect(record.revision == revision)
                case .deleted(let name, let revision):
                    seen.append("deleted \(name)")
                    revisions.append(revision)
                case .resyncRequired:
                    seen.append("resync")
                }
            }
            #expect(seen == expected)
            #expect(revisions == revisions.sorted() && Set(revisions).count == revisions.count)
            #expect(revisions.first.map { $0 > start } == true)

            // Watching from the old revision again replays the same history.
            let replay = try await Self.next(expected.count, of: registry.watch(after: start))
            #expect(replay == events)
        }
    }

    @Test func leaseExpiryDeletesTheRecordAndHeartbeatReRegisters() async throws {
        try await EtcdTestServer.with { server in
            let registry = try server.registry(leaseTTL: .seconds(3))
            let kept = try await registry.publish(Self.record("kept"))
            let lapsed = try await registry.publish(Self.record("lapsed"))
            let stream = registry.watch(after: try await registry.list().revision)

            // Keep "kept" alive while "lapsed" misses its heartbeats.
            let heartbeats = Task {
                while !Task.isCancelled {
                    try await registry.heartbeat(name: "kept")
                    try await Task.sleep(for: .milliseconds(400))
                }
            }
            defer { heartbeats.cancel() }
            let events = try await Self.next(1, of: stream)
            guard case .deleted(let name, _)? = events.first else {
                Issue.record("expected a deletion, got \(events)")
                return
            }
            #expect(name == "lapsed")
            #expect(try await registry.list().records.map(\.name) == ["kept"])

            // The lapsed node's next heartbeat finds its lease gone and registers again.
            try await registry.heartbeat(name: "lapsed")
            let back = try await registry.list().records.first { $0.name == "lapsed" }
            #expect(back?.nodeID == lapsed.nodeID)  // its ID was free, and it asked for it
            #expect(back.map { $0.nodeID != kept.nodeID } == true)
        }
    }

    @Test func compactedStartRevisionAsksForResync() async throws {
        try await EtcdTestServer.with { server in
            let registry = try server.registry()
            let before = try await registry.list().revision
            for spi in UInt8(1)...3 { _ = try await registry.publish(Self.record("a", spi: spi)) }
            let now = try await registry.list().revision
            _ = try await server.gateway.call(
                "/v3/kv/compaction", EtcdWire.CompactionRequest(revision: String(now), physical: true), as: EtcdWire.Empty.self)

            var events: [RegistryEvent] = []
            for try await event in registry.watch(after: before) { events.append(event) }  // must end by itself
            #expect(events == [.resyncRequired])

            // From the compaction revision on, watching works again.
            let stream = registry.watch(after: now)
            let update = try await registry.publish(Self.record("a", spi: 9))
            let next = try await Self.next(1, of: stream)
            guard case .put(let record, _)? = next.first else {
                Issue.record("expected a put, got \(next)")
                return
            }
            #expect(record == update)
        }
    }

    @Test func failsOverFromADeadEndpoint() async throws {
        try await EtcdTestServer.with { server in
            let dead = "http://127.0.0.1:\(try EtcdTestServer.freeLoopbackPorts(count: 1)[0])"
            let registry = try server.registry(endpoints: [dead, server.clientURL])
            // The watch is this registry's first call, so it is the one that meets the dead endpoint.
            let stream = registry.watch(after: 0)
            let stored = try await registry.publish(Self.record("a"))
            #expect(try await registry.list().records == [stored])
            let events = try await Self.next(1, of: stream)
            guard case .put(let watched, _)? = events.first else {
                Issue.record("expected a put through the live endpoint, got \(events)")
                return
            }
            #expect(watched == stored)

            // With every endpoint dead, the error names each one.
            let unreachable = try server.registry(endpoints: [dead, dead + "/"])
            do {
                _ = try await unreachable.list()
                Issue.record("list on dead endpoints succeeded")
            } catch let error as EtcdRegistryError {
                guard case .unreachable(let path, let failures) = error else {
                    Issue.record("unexpected error \(error)")
                    return
                }
                #expect(path == "/v3/kv/range")
                #expect(failures.count == 2)
                #expect(failures.allSatisfy { $0.hasPrefix(dead) })
            }
        }
    }

    @Test func failsOverFromAMemberThatNeverAnswers() async throws {
        try await EtcdTestServer.with { server in
            let silent = try EtcdTestServer.silentListener()
            defer { close(silent.fd) }
            let registry = try server.registry(endpoints: [silent.url, server.clientURL], requestTimeout: .milliseconds(500))
            let stored = try await registry.publish(Self.record("a"))
            #expect(try await registry.list().records == [stored])

            let hung = try server.registry(endpoints: [silent.url], requestTimeout: .milliseconds(300))
            do {
                _ = try await hung.list()
                Issue.record("list on a member that never answers succeeded")
            } catch let error as EtcdRegistryError {
                guard case .unreachable(_, let failures) = error else {
                    Issue.record("unexpected error \(error)")
                    return
                }
                #expect(failures.count == 1)
            }
        }
    }

    @Test func failsOverFromAMemberWithoutLeaderButNotFromRejections() async throws {
        try await EtcdTestServer.with { server in
            let noLeader = try EtcdCannedResponder(
                status: "503 Service Unavailable",
                body: #"{"error":"etcdserver: no leader","message":"etcdserver: no leader","code":14}"#)
            let rejecting = try EtcdCannedResponder(
                status: "400 Bad Request",
                body: #"{"error":"etcdserver: permission denied","message":"etcdserver: permission denied","code":7}"#)
            defer {
                noLeader.stop()
                rejecting.stop()
            }
            // UNAVAILABLE (14) is a member problem: the next endpoint serves the call.
            let stored = try await server.registry(endpoints: [noLeader.url, server.clientURL]).publish(Self.record("a"))
            #expect(try await server.registry().list().records == [stored])

            // Any other etcd error is an answer: it is reported, not retried elsewhere.
            await #expect(
                throws: EtcdRegistryError.server(
                    endpoint: rejecting.url, path: "/v3/kv/range", code: 7, message: "etcdserver: permission denied")
            ) {
                try await server.registry(endpoints: [rejecting.url, server.clientURL]).list()
            }

            // Only unavailable members: the error lists each one's reason.
            do {
                _ = try await server.registry(endpoints: [noLeader.url]).list()
                Issue.record("list on a member without leader succeeded")
            } catch let error as EtcdRegistryError {
                #expect("\(error)".contains("no leader"))
                guard case .unreachable = error else {
                    Issue.record("unexpected error \(error)")
                    return
                }
            }
        }
    }

    @Test func failsOverWhenTheCurrentEndpointDies() async throws {
        // Two independent servers stand in for two members: the client only needs a second
        // endpoint that answers once the first one has gone away.
        try await EtcdTestServer.with { first in
            try await EtcdTestServer.with { second in
                let registry = try first.registry(endpoints: [first.clientURL, second.clientURL])
                let stored = try await registry.publish(Self.record("a"))
                #expect(try await registry.list().records == [stored])  // served by the first
                first.stop()
                #expect(try await registry.list().records == [])  // the second, which has no records
                let again = try await registry.publish(Self.record("a"))
                #expect(try await second.registry().list().records == [again])
            }
        }
    }

    @Test func invalidPayloadsInEtcdAreSkipped() async throws {
        try await EtcdTestServer.with { server in
            let registry = try server.registry()
            let start = try await registry.list().revision
            let stream = registry.watch(after: start)
            let gateway = server.gateway
            let prefix = registry.keyspace.recordsPrefix
            let foreign: [(String, String)] = [
                ("garbage", "{not json"),
                ("wrong-name", #"{"name":"someone-else","nodeID":1,"podCIDRs":[],"bootID":"","keyFingerprint":"","xfrmRevision":0,"heartbeatMillis":0}"#),
                ("bad-spi", #"{"name":"bad-spi","nodeID":1,"podCIDRs":[],"bootID":"","spi":99,"keyFingerprint":"","xfrmRevision":0,"heartbeatMillis":0}"#),
            ]
            for (name, value) in foreign {
                _ = try await gateway.call(
                    "/v3/kv/put", EtcdWire.PutRequest(key: EtcdWire.base64(prefix + name), value: EtcdWire.base64(value)),
                    as: EtcdWire.Empty.self)
            }
            let good = try await registry.publish(Self.record("good"))

            #expect(try await registry.list().records == [good])
            let events = try await Self.next(1, of: stream)
            guard case .put(let record, _)? = events.first else {
                Issue.record("expected the good record, got \(events)")
                return
            }
            #expect(record == good)
        }
    }

    @Test func etcdErrorsAreReportedClearly() async throws {
        try await EtcdTestServer.with { server in
            let registry = try server.registry()
            await #expect(throws: EtcdRegistryError.notPublished(name: "never")) {
                try await registry.heartbeat(name: "never")
            }
            await #expect(throws: EtcdRegistryError.invalidNodeName("a/b", reason: "contains '/'")) {
                try await registry.publish(Self.record("a/b"))
            }
            do {
                _ = try await server.gateway.call(
                    "/v3/kv/put", EtcdWire.PutRequest(key: EtcdWire.base64("/x"), value: "", lease: "12345"), as: EtcdWire.Empty.self)
                Issue.record("put with an unknown lease succeeded")
            } catch let error as EtcdRegistryError {
                #expect(error == .server(endpoint: server.clientURL, path: "/v3/kv/put", code: 5, message: "etcdserver: requested lease not found"))
                #expect(error.isLeaseNotFound)
                #expect("\(error)".contains("requested lease not found"))
            }
        }
    }

    @Test func watchThrowsWhenTheServerGoesAway() async throws {
        try await EtcdTestServer.with { server in
            let registry = try server.registry()
            let stream = registry.watch(after: try await registry.list().revision)
            _ = try await registry.publish(Self.record("a"))
            var iterator = stream.makeAsyncIterator()
            let first = try await iterator.next()
            #expect(first != nil)
            server.stop()
            await #expect(throws: (any Error).self) {
                while try await iterator.next() != nil {}
            }
        }
    }
}
