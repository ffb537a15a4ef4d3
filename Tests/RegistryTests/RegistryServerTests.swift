import NIOHTTP1
import TestSupport
import Foundation
import IPsecPrimitives
import Logging
import Registry
import RegistryServer
import Testing

@Suite(.timeLimit(.minutes(2))) struct RegistryServerTests {
    private func record(_ name: String, spi: UInt8 = 1, nodeID: UInt16 = 0) -> NodeRecord {
        NodeRecord(
            name: name, nodeID: nodeID, ipv4: ownClaims(of: name).underlay, podCIDRs: [ownClaims(of: name).pods],
            bootID: "boot-\(name)", spi: KeyID(spi), keyFingerprint: "fp\(spi)")
    }

    @Test(arguments: [EmbeddedRegistryClient.WatchTransport.stream, .longPoll])
    func watchDeliversEveryChangeInOrderIncludingAdminDeletions(transport: EmbeddedRegistryClient.WatchTransport) async throws {
        try await TestRegistryServer.with { server in
            let a = server.client("node-a", transport: transport)
            let b = server.client("node-b", transport: transport)
            let start = try await a.list().revision
            let watch = Task { try await take(5, from: server.client("node-c", transport: transport).watch(after: start)) }
            _ = try await a.publish(record("node-a", spi: 1))
            _ = try await b.publish(record("node-b", spi: 1))
            _ = try await a.publish(record("node-a", spi: 2))
            #expect(try await server.admin.delete(name: "node-b"))
            _ = try await a.publish(record("node-a", spi: 3))
            let events = try await watch.value
            let summary = events.map { event -> String in
                switch event {
                case .put(let r, let rev): "\(rev) put \(r.name) \(r.spi!)"
                case .deleted(let name, let rev): "\(rev) delete \(name)"
                case .resyncRequired: "resync"
                }
            }
            #expect(summary == [
                "\(start + 1) put node-a 1", "\(start + 2) put node-b 1", "\(start + 3) put node-a 2",
                "\(start + 4) delete node-b", "\(start + 5) put node-a 3",
            ])
            let snapshot = try await a.list()
            #expect(snapshot.revision == start + 5)
            #expect(snapshot.records.first?.revision == start + 5)
            #expect(snapshot.records.map(\.name) == ["node-a"])
            // A watch from an older revision replays the same history.
            let replay = try await take(2, from: a.watch(after: start + 3))
            #expect(replay == [.deleted(name: "node-b", revision: start + 4), events[4]])
            // The transport asked for is the one used.
            if transport == .stream {
                #expect(server.statistics.streamsOpened == 2)
                #expect(server.statistics.longPolls == 0)
            } else {
                #expect(server.statistics.streamsOpened == 0)
                #expect(server.statistics.longPolls >= 2)
            }
        }
    }

    @Test func concurrentWritersYieldConsecutiveRevisionsEachSeenOnce() async throws {
        try await TestRegistryServer.with { server in
            let start = try await server.client("node-x").list().revision
            let names = (0..<20).map { "writer-\($0)" }
            let watch = Task { try await take(names.count, from: server.client("node-x").watch(after: start)) }
            try await withThrowingTaskGroup(of: Void.self) { group in
                for name in names { group.addTask { _ = try await server.client(name).publish(record(name)) } }
                try await group.waitForAll()
            }
            let events = try await watch.value
            #expect(events.map(\.revisionForTest) == (1...Int64(names.count)).map { start + $0 })
            let written = events.compactMap { event -> String? in
                if case .put(let r, _) = event { r.name } else { nil }
            }
            #expect(written.sorted() == names.sorted())
        }
    }

    @Test func missedHeartbeatsExpireTheLeaseAndAnnounceDeletion() async throws {
        try await TestRegistryServer.with(leaseTTL: .seconds(2)) { server in
            let a = server.client("node-a")
            let b = server.client("node-b")
            // Watch from before the publishes, so the expiry is seen however slow the machine is.
            let watch = b.watch(after: try await b.list().revision)
            _ = try await a.publish(record("node-a"))
            let published = try await b.publish(record("node-b"))
            // node-b heartbeats (every 100 ms, TTL 2 s) while node-a stays silent: node-a expires.
            let heartbeats = Task {
                while !Task.isCancelled {
                    try? await b.heartbeat(name: "node-b")
                    try? await Task.sleep(for: .milliseconds(100))
                }
            }
            defer { heartbeats.cancel() }
            var deleted: [String] = []
            for try await event in watch {
                if case .deleted(let name, _) = event {
                    deleted.append(name)
                    break
                }
            }
            #expect(deleted == ["node-a"])
            await #expect(throws: RegistryError.notFound("no live record for node node-a; publish it again")) {
                try await a.heartbeat(name: "node-a")
            }
            let snapshot = try await b.list()
            #expect(snapshot.records.map(\.name) == ["node-b"])
            #expect(snapshot.records.first?.nodeID == published.nodeID)
        }
    }

    @Test func nodeIDsAreUniqueAmongConcurrentRegistrationsAndKeptByLiveNodes() async throws {
        try await TestRegistryServer.with { server in
            let names = (0..<40).map { "node-\($0)" }
            let stored = try await withThrowingTaskGroup(of: NodeRecord.self) { group in
                for name in names { group.addTask { try await server.client(name).publish(record(name)) } }
                return try await group.reduce(into: [NodeRecord]()) { $0.append($1) }
            }
            let ids = stored.map(\.nodeID)
            #expect(!ids.contains(0))
            #expect(Set(ids).count == names.count)
            // Publishing again (even asking for another ID) keeps the ID a live node holds.
            let first = stored.first { $0.name == "node-0" }!
            let other = stored.first { $0.name == "node-1" }!
            let again = try await server.client("node-0").publish(record("node-0", spi: 2, nodeID: other.nodeID))
            #expect(again.nodeID == first.nodeID)
            // A deleted node's ID is not handed to the next newcomer while unused IDs remain.
            #expect(try await server.admin.delete(name: "node-0"))
            let newcomer = try await server.client("node-new").publish(record("node-new"))
            #expect(newcomer.nodeID != first.nodeID)
            #expect(!ids.contains(newcomer.nodeID))
            // A node asking for an ID held by a live node gets another one.
            let taker = try await server.client("node-taker").publish(record("node-taker", nodeID: other.nodeID))
            #expect(taker.nodeID != other.nodeID)
        }
    }

    @Test func survivesRestartWithRecordsRevisionsAndHistoryIntact() async throws {
        let directory = TestRegistryServer.makeDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let before = try await TestRegistryServer.with(directory: directory) { server in
            _ = try await server.client("node-a").publish(record("node-a", spi: 4))
            _ = try await server.client("node-b").publish(record("node-b"))
            #expect(try await server.admin.delete(name: "node-b"))
            return try await server.client("node-a").list()
        }
        try await TestRegistryServer.with(directory: directory) { server in
            let a = server.client("node-a")
            let after = try await a.list()
            #expect(after.revision == before.revision)
            #expect(after.records.map(\.name) == ["node-a"])
            #expect(after.records.first?.nodeID == before.records.first?.nodeID)
            #expect(after.records.first?.spi == KeyID(4))
            #expect(after.records.first?.revision == 1)
            let history = try await take(3, from: a.watch(after: 0))
            #expect(history.map(\.revisionForTest) == [1, 2, 3])
            let next = try await a.publish(record("node-a", spi: 5))
            #expect(next.nodeID == before.records.first?.nodeID)
            #expect(try await a.list().revision == before.revision + 1)
        }
    }

    @Test func rejectsMissingWrongAndCrossNodeCredentialsWithoutStoring() async throws {
        try await TestRegistryServer.with { server in
            let body = Array(try JSONEncoder().encode(record("node-a")))
            let start = try await server.client("node-a").list().revision
            #expect(try await server.raw(.PUT, "/v1/nodes/node-a", body: body).status == 401)
            #expect(try await server.raw(.GET, "/v1/nodes").status == 401)
            let wrong = try await server.raw(.PUT, "/v1/nodes/node-a", as: "node-a", token: String(repeating: "0", count: 64), body: body)
            #expect(wrong.status == 401)
            #expect(!wrong.body.contains(TestRegistryServer.credentials.credential(for: "node-a")))
            // node-b's valid credential cannot write node-a's record, nor delete.
            #expect(try await server.raw(.PUT, "/v1/nodes/node-a", as: "node-b", body: body).status == 403)
            #expect(try await server.raw(.POST, "/v1/nodes/node-a/heartbeat", as: "node-b").status == 403)
            #expect(try await server.raw(.DELETE, "/v1/nodes/node-a", as: "node-a").status == 403)
            // The admin deletes but does not write records.
            #expect(try await server.raw(.PUT, "/v1/nodes/node-a", as: RegistryCredentials.adminName, body: body).status == 403)
            let typed = server.client("node-b")
            await #expect(throws: RegistryError.forbidden("node node-b may not write the record of node-a")) {
                try await typed.publish(record("node-a"))
            }
            let after = try await server.client("node-a").list()
            #expect(after.revision == start)
            #expect(after.records.isEmpty)
        }
    }

    /// One node's credential cannot make the registry carry a record that claims another node's pod CIDRs or
    /// underlay, a default route or a too-broad prefix: refused naming the other node and prefix, nothing stored.
    @Test func refusesClaimsOnOtherNodesAndTooBroadPrefixes() async throws {
        try await TestRegistryServer.with { server in
            let a = server.client("node-a")
            let stored = try await a.publish(record("node-a"))
            let start = try await a.list().revision
            let (underlayA, podsA) = ownClaims(of: "node-a")
            func put(_ change: (inout NodeRecord) -> Void) async throws -> (status: Int, body: String) {
                var b = record("node-b")
                change(&b)
                return try await server.raw(.PUT, "/v1/nodes/node-b", as: "node-b", body: Array(try JSONEncoder().encode(b)))
            }
            let cases: [(String, (inout NodeRecord) -> Void, Int, [String])] = [
                ("the same CIDR", { $0.podCIDRs = [podsA] }, 409, ["\(podsA)", "node-a"]),
                ("a CIDR inside", { $0.podCIDRs = [IPPrefix(address: podsA.address, length: 26)!] }, 409, ["overlaps \(podsA)", "node-a"]),
                ("a CIDR around", { $0.podCIDRs = [IPPrefix(address: podsA.address, length: 20)!] }, 409, ["overlaps \(podsA)", "node-a"]),
                ("the underlay", { $0.ipv4 = underlayA }, 409, ["ipv4: \(underlayA) is the underlay address of node node-a"]),
                ("a CIDR over the underlay", { $0.podCIDRs = [IPPrefix(address: underlayA, length: 24)!] }, 409, ["the underlay address of node node-a"]),
                ("0.0.0.0/0", { $0.podCIDRs = [IPPrefix("0.0.0.0/0")!] }, 422, ["0.0.0.0/0 is a default route"]),
                ("::/0", { $0.podCIDRs = [IPPrefix("::/0")!] }, 422, ["::/0 is a default route"]),
                ("a /8", { $0.podCIDRs = [IPPrefix("11.0.0.0/8")!] }, 422, ["11.0.0.0/8 is broader than /16"]),
                ("a /32 of IPv6", { $0.podCIDRs = [IPPrefix("fd00::/32")!] }, 422, ["fd00::/32 is broader than /48"]),
            ]
            for (what, change, status, phrases) in cases {
                let answer = try await put(change)
                #expect(answer.status == status, "\(what): \(answer)")
                for phrase in phrases { #expect(answer.body.contains(phrase), "\(what): \(answer.body)") }
            }
            let after = try await a.list()
            #expect(after.revision == start)
            #expect(after.records == [stored])
            #expect(try await put { _ in }.status == 200)  // its own addresses are fine
        }
    }

    /// The admin revokes one node's credentials without a new cluster secret: the old credential is refused at
    /// once (its record deleted), the next generation's is accepted, other nodes are untouched, and the
    /// revocation survives a registry restart.
    @Test func aRevokedCredentialIsRefusedAndTheNextGenerationAccepted() async throws {
        let directory = TestRegistryServer.makeDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let credentials = TestRegistryServer.credentials
        try await TestRegistryServer.with(directory: directory) { server in
            _ = try await server.client("node-a").publish(record("node-a"))
            _ = try await server.client("node-b").publish(record("node-b"))
            #expect(try await server.admin.revoke(name: "node-a") == 1)
            #expect(try await server.admin.list().records.map(\.name) == ["node-b"])
            let old = try await server.raw(.GET, "/v1/nodes", as: "node-a")
            #expect(old.status == 401)
            let next = credentials.credential(for: "node-a", generation: 1)
            #expect(next.hasPrefix("g1."))
            #expect(try await server.raw(.GET, "/v1/nodes", as: "node-a", token: next).status == 200)
            #expect(try await server.raw(.GET, "/v1/nodes", as: "node-b").status == 200)
            // Only the admin may revoke.
            #expect(try await server.raw(.POST, "/v1/nodes/node-b/revoke", as: "node-a", token: next).status == 403)
            // A token naming a generation it was not made for does not match.
            #expect(try await server.raw(.GET, "/v1/nodes", as: "node-a", token: "g2." + String(next.dropFirst(3))).status == 401)
        }
        try await TestRegistryServer.with(directory: directory) { server throws in
            let old = try await server.raw(.GET, "/v1/nodes", as: "node-a")
            #expect(old.status == 401)
            #expect(try await server.raw(.GET, "/v1/nodes", as: "node-a", token: credentials.credential(for: "node-a", generation: 1)).status == 200)
        }
    }

    /// A captured write, sent again later (byte for byte, with the node's valid credential), is refused: every
    /// write must carry a larger `sequence` than the stored record. Across a reboot too (a new bootID).
    @Test func aReplayedWriteIsRefused() async throws {
        try await TestRegistryServer.with { server in
            func put(_ body: [UInt8]) async throws -> (status: Int, body: String) {
                try await server.raw(.PUT, "/v1/nodes/node-a", as: "node-a", body: body)
            }
            var r = record("node-a", spi: 3)
            r.sequence = 1_000
            let captured = Array(try JSONEncoder().encode(r))
            #expect(try await put(captured).status == 200)
            r.spi = KeyID(4)
            r.sequence = 1_001
            let latest = Array(try JSONEncoder().encode(r))
            #expect(try await put(latest).status == 200)
            let replayed = try await put(captured)
            #expect(replayed.status == 409)
            #expect(replayed.body.contains("sequence: 1000 is not after the stored 1001: a replayed or out-of-order write"), "\(replayed.body)")
            #expect(try await put(latest).status == 409)  // even the last write, sent twice
            r.bootID = "after-a-reboot"
            r.spi = KeyID(1)
            r.sequence = 2_000
            #expect(try await put(Array(try JSONEncoder().encode(r))).status == 200)
            #expect(try await put(captured).status == 409)  // the old boot's records stay refused
            #expect(try await server.client("node-a").list().records.first?.bootID == "after-a-reboot")
        }
    }

    /// A heartbeat renews the lease only with a `sequence` larger than the record's and the last heartbeat's:
    /// a captured heartbeat, sent again, cannot keep a departed node alive (refused, or answered without renewing
    /// when a write came since). The typed client's heartbeats pass.
    @Test func aReplayedHeartbeatIsRefused() async throws {
        try await TestRegistryServer.with { server in
            func beat(_ query: String) async throws -> (status: Int, body: String) {
                try await server.raw(.POST, "/v1/nodes/node-a/heartbeat\(query)", as: "node-a")
            }
            var r = record("node-a", spi: 3)
            r.sequence = 5_000
            #expect(try await server.raw(.PUT, "/v1/nodes/node-a", as: "node-a", body: Array(JSONEncoder().encode(r))).status == 200)
            let missing = try await beat("")
            #expect(missing.status == 400 && missing.body.contains("sequence"), "\(missing.body)")
            #expect(try await beat("?sequence=abc").status == 400)
            func heartbeatMillis() async throws -> Int64? {
                try await server.client("node-b").list().records.first { $0.name == "node-a" }?.heartbeatMillis
            }
            let published = try await heartbeatMillis()
            try await Task.sleep(for: .milliseconds(20))
            // Not after the record's: older than the last write (a heartbeat that raced a publish, or a replay of
            // one from before it): answered, but the lease is not renewed.
            #expect(try await beat("?sequence=5000").status == 204)
            #expect(try await heartbeatMillis() == published)
            #expect(try await beat("?sequence=5001").status == 204)
            let renewed = try await heartbeatMillis()
            #expect(renewed != nil && renewed! > published!)
            let replayed = try await beat("?sequence=5001")  // the same heartbeat, replayed
            #expect(replayed.status == 409 && replayed.body.contains("replayed or out-of-order heartbeat"), "\(replayed.body)")
            #expect(try await beat("?sequence=5002").status == 204)
            // A write resets the heartbeat rule to its own sequence: after an agent restarts with its wall clock
            // behind the last heartbeat's, its heartbeats (drawn after its publish) are accepted again.
            r.sequence = 5_100
            #expect(try await server.raw(.PUT, "/v1/nodes/node-a", as: "node-a", body: Array(JSONEncoder().encode(r))).status == 200)
            #expect(try await beat("?sequence=5002").status == 204)  // older than that write: not renewed, not refused
            #expect(try await beat("?sequence=5101").status == 204)
            // The typed client draws heartbeats from its write sequence: after its own publish, every one passes.
            let a = server.client("node-a")
            r.sequence = 0
            _ = try await a.publish(r)
            for _ in 0..<3 { try await a.heartbeat(name: "node-a") }
        }
    }

    /// `spi` and `encryptSpi` only move forward (1–7 steps, wrapping 15 → 1) while the bootID stays; a replayed
    /// or forged older record is refused, a rebooted node starts over.
    @Test func keyIDsOnlyMoveForwardWithinOneBoot() async throws {
        try await TestRegistryServer.with { server in
            let a = server.client("node-a")
            var r = record("node-a", spi: 14)
            r.encryptSpi = KeyID(14)
            _ = try await a.publish(r)
            var sequence = Int64(1) << 50  // above the client's wall-clock stamp
            func put(spi: UInt8?, encrypt: UInt8?, boot: String = "boot-node-a") async throws -> Int {
                var next = r
                sequence += 1
                next.sequence = sequence
                next.spi = spi.flatMap { KeyID($0) }
                next.encryptSpi = encrypt.flatMap { KeyID($0) }
                next.bootID = boot
                return try await server.raw(.PUT, "/v1/nodes/node-a", as: "node-a", body: Array(try JSONEncoder().encode(next))).status
            }
            #expect(try await put(spi: 13, encrypt: 14) == 409)
            #expect(try await put(spi: 14, encrypt: 13) == 409)
            #expect(try await put(spi: nil, encrypt: 14) == 409)
            #expect(try await put(spi: 7, encrypt: 14) == 409)  // 8 steps ahead reads as behind
            #expect(try await put(spi: 1, encrypt: 14) == 200)  // 14 → 1 is two steps
            #expect(try await put(spi: 1, encrypt: 1) == 200)
            r.sequence = sequence + 1
            let back = try await server.raw(.PUT, "/v1/nodes/node-a", as: "node-a", body: Array(try JSONEncoder().encode(r)))
            #expect(back.status == 409)
            #expect(back.body.contains("spi: 14 would move node-a back from key 1"), "\(back.body)")
            sequence += 1
            #expect(try await put(spi: 3, encrypt: nil, boot: "rebooted") == 200)
            #expect(try await a.list().records.first?.spi == KeyID(3))
        }
    }

    @Test func rejectsBadPayloadsWithAMessageAndStoresNothing() async throws {
        try await TestRegistryServer.with { server in
            let a = server.client("node-a")
            let start = try await a.list().revision
            func put(_ json: String, path: String = "/v1/nodes/node-a") async throws -> (status: Int, body: String) {
                try await server.raw(.PUT, path, as: "node-a", body: Array(json.utf8))
            }
            let valid = String(decoding: try JSONEncoder().encode(record("node-a")), as: UTF8.self)
            let badSPI = valid.replacingOccurrences(of: "\"spi\":1", with: "\"spi\":16")
            #expect(badSPI != valid)
            let spi = try await put(badSPI)
            #expect(spi.status == 400)
            #expect(spi.body.contains("spi"))
            #expect(spi.body.contains("1…15"))

            var many = record("node-a")
            many.podCIDRs = (0..<65).map { IPPrefix("10.2.\($0).0/24")! }
            let cidrs = try await put(String(decoding: try JSONEncoder().encode(many), as: UTF8.self))
            #expect(cidrs.status == 422)
            #expect(cidrs.body.contains("podCIDRs"))

            let badName = try await server.raw(
                .PUT, "/v1/nodes/Bad_Name", as: "Bad_Name",
                body: Array(String(decoding: try JSONEncoder().encode(record("Bad_Name")), as: UTF8.self).utf8))
            #expect(badName.status == 422)
            #expect(badName.body.contains("DNS-like"))

            let malformed = try await put("{\"name\": \"node-a\", ")
            #expect(malformed.status == 400)
            #expect(malformed.body.contains("not valid JSON"))

            let mistyped = try await put("{\"name\": \"node-a\", \"podCIDRs\": \"10.0.0.0/8\"}")
            #expect(mistyped.status == 400)
            #expect(mistyped.body.contains("podCIDRs"))

            let noName = try await put("{\"spi\": 1}")
            #expect(noName.status == 400)
            #expect(noName.body.contains("missing field name"))

            let mismatch = try await put(valid, path: "/v1/nodes/node-b")
            #expect(mismatch.status == 403)

            var huge = record("node-a")
            huge.bootID = String(repeating: "x", count: 70 * 1024)
            let oversized = try await put(String(decoding: try JSONEncoder().encode(huge), as: UTF8.self))
            #expect(oversized.status == 413)

            let watch = try await server.raw(.GET, "/v1/watch?after=-1", as: "node-a")
            #expect(watch.status == 400)

            let after = try await a.list()
            #expect(after.revision == start)
            #expect(after.records.isEmpty)
            // The same record with sane values is accepted.
            #expect(try await put(valid).status == 200)
        }
    }

    @Test(arguments: [EmbeddedRegistryClient.WatchTransport.stream, .longPoll])
    func watchFromACompactedRevisionAnswersResync(transport: EmbeddedRegistryClient.WatchTransport) async throws {
        try await TestRegistryServer.with(historyLimit: 3) { server in
            let a = server.client("node-a", transport: transport)
            for spi in 1...8 { _ = try await a.publish(record("node-a", spi: UInt8(spi))) }
            let events = try await take(1, from: a.watch(after: 0))
            #expect(events == [.resyncRequired])
            // A revision the registry never reached (another history) also asks for a resync.
            #expect(try await take(1, from: a.watch(after: 1000)) == [.resyncRequired])
            let snapshot = try await a.list()
            // From the list's revision the watch works again.
            let watch = Task { try await take(1, from: a.watch(after: snapshot.revision)) }
            let stored = try await a.publish(record("node-a", spi: 9))
            #expect(try await watch.value == [.put(stored, revision: snapshot.revision + 1)])
        }
    }

    @Test func credentialsNeverReachTheLogsOfServerOrClient() async throws {
        let lines = CapturingLogHandler.Lines()
        let logger = Logger(label: "capture") { _ in CapturingLogHandler(lines: lines) }
        let good = TestRegistryServer.credentials.credential(for: "node-a")
        let wrong = String(repeating: "f", count: 64)
        try await TestRegistryServer.with(logger: logger) { server in
            _ = try await server.client("node-a").publish(record("node-a"))
            let body = Array(try JSONEncoder().encode(record("node-a")))
            #expect(try await server.raw(.PUT, "/v1/nodes/node-a", as: "node-a", token: wrong, body: body).status == 401)
            #expect(try await server.raw(.GET, "/v1/nodes", as: "node-b", token: good).status == 401)
            // A client with a wrong credential logs its failed sessions.
            let impostor = EmbeddedRegistryClient(baseURL: server.baseURL, nodeName: "node-c", credential: wrong)
            let client = RegistryClient(
                registry: impostor, nodeName: "node-c",
                backoff: .init(minBackoff: .milliseconds(20), maxBackoff: .milliseconds(40)), logger: logger)
            var updates = client.updates.makeAsyncIterator()
            let run = Task { await client.run() }
            _ = await updates.collect { $0.isUnreachable }
            run.cancel()
            await run.value
        }
        let all = lines.all
        #expect(all.contains { $0.contains("registry session failed") && $0.contains("unauthorized") })
        for line in all {
            #expect(!line.contains(good))
            #expect(!line.contains(wrong))
            #expect(!line.contains("test-cluster-secret"))
        }
    }

    @Test func credentialsAreDerivedPerNameAndNeverPrinted() throws {
        let credentials = TestRegistryServer.credentials
        let a = credentials.credential(for: "node-a")
        #expect(a.count == 64)
        #expect(a.allSatisfy { $0.isHexDigit })
        #expect(a == RegistryCredentials(secret: TestRegistryServer.secret).credential(for: "node-a"))
        #expect(a != credentials.credential(for: "node-b"))
        #expect(a != RegistryCredentials(secret: SecretBytes(Array("another-secret-0123456789".utf8))).credential(for: "node-a"))
        #expect(credentials.isValid(token: a, for: "node-a"))
        #expect(!credentials.isValid(token: a, for: "node-b"))
        #expect(!"\(credentials)".contains("test-cluster-secret"))

        let directory = TestRegistryServer.makeDirectory()
        let file = directory + "/secret"
        try "short\n".write(toFile: file, atomically: true, encoding: .utf8)
        #expect(throws: RegistryCredentials.Failure.self) { try RegistryCredentials(secretFile: file) }
        try "test-cluster-secret-0123456789\n".write(toFile: file, atomically: true, encoding: .utf8)
        #expect(chmod(file, 0o644) == 0)
        #expect(throws: RegistryCredentials.Failure.self) { try RegistryCredentials(secretFile: file) }
        #expect(try RegistryCredentials(secretFile: file, shared: .warn).warning?.contains("has mode 0644") == true)
        #expect(chmod(file, 0o600) == 0)
        #expect(try RegistryCredentials(secretFile: file).warning == nil)
        #expect(try RegistryCredentials(secretFile: file).credential(for: "node-a") == a)
        try? FileManager.default.removeItem(atPath: directory)
    }
}

extension RegistryEvent {
    var revisionForTest: Int64? {
        switch self {
        case .put(_, let revision), .deleted(_, let revision): revision
        case .resyncRequired: nil
        }
    }
}
