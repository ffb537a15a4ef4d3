import Foundation
import IPsecPrimitives
import Logging
import NIOCore
import NIOHTTP1
import Registry
import Testing
@testable import RegistryEtcd

/// The etcd backend's pure parts: key layout, stream framing, watch translation, configuration.
struct EtcdWireTests {
    let keyspace = EtcdKeyspace(prefix: "/p/")
    var translator: EtcdWatchTranslator {
        EtcdWatchTranslator(codec: EtcdRecordCodec(keyspace: keyspace), endpoint: "http://e:1", logger: Logger(label: "test"))
    }

    func line(_ text: String) -> ByteBuffer { ByteBuffer(string: text) }

    func recordValue(_ record: NodeRecord) throws -> String {
        try EtcdRecordCodec(keyspace: keyspace).encode(record)
    }

    @Test func prefixRangeEndIncrementsTheLastByte() {
        #expect(EtcdKeyspace.rangeEnd(ofPrefix: Array("/p/nodes/".utf8)) == Array("/p/nodes0".utf8))
        #expect(EtcdKeyspace.rangeEnd(ofPrefix: [0x61, 0xFF, 0xFF]) == [0x62])
        #expect(EtcdKeyspace.rangeEnd(ofPrefix: [0xFF]) == [0])
    }

    @Test func keysRoundTrip() {
        #expect(keyspace.name(fromRecordKey: Array(keyspace.recordKey("node-1").utf8)) == "node-1")
        #expect(keyspace.name(fromRecordKey: Array("/p/nodes/".utf8)) == nil)
        #expect(keyspace.name(fromRecordKey: Array("/q/nodes/x".utf8)) == nil)
        #expect(keyspace.nodeID(fromIDKey: Array(keyspace.idKey(65535).utf8)) == 65535)
        #expect(keyspace.nodeID(fromIDKey: Array("/p/ids/70000".utf8)) == nil)
    }

    @Test func splitterReassemblesLinesAcrossChunks() throws {
        var splitter = LineSplitter(maxLineBytes: 64)
        var lines: [String] = []
        for chunk in [#"{"a":"#, "1}\n\n{\"b\"", ":2}\r\n{\"c\":3}\n{\"d"] {
            splitter.append(ByteBuffer(string: chunk))
            while let next = try splitter.nextLine() { lines.append(String(buffer: next)) }
        }
        #expect(lines == [#"{"a":1}"#, "{\"b\":2}\r", #"{"c":3}"#])
        splitter.append(ByteBuffer(string: String(repeating: "x", count: 70)))
        #expect(throws: LineSplitter.LineTooLong.self) { try splitter.nextLine() }
    }

    @Test func watchEventsMapToRegistryEvents() throws {
        let record = NodeRecord(name: "n1", nodeID: 3, spi: KeyID(2))
        let key = EtcdWire.base64(keyspace.recordKey("n1"))
        let text = """
            {"result":{"header":{"revision":"9"},"events":[\
            {"kv":{"key":"\(key)","create_revision":"8","mod_revision":"8","version":"1","value":"\(try recordValue(record))"}},\
            {"type":"DELETE","kv":{"key":"\(key)","mod_revision":"9"}}]}}
            """
        var stored = record
        stored.revision = 8  // taken from mod_revision
        #expect(try translator.translate(line: line(text)) == .events([.put(stored, revision: 8), .deleted(name: "n1", revision: 9)]))
        #expect(try translator.translate(line: line(#"{"result":{"header":{"revision":"7"},"created":true}}"#)) == .events([]))
    }

    @Test func invalidRecordsInTheWatchAreSkipped() throws {
        let good = NodeRecord(name: "ok", nodeID: 1, revision: 7)
        func put(_ name: String, _ value: String, _ revision: Int) -> String {
            #"{"kv":{"key":"\#(EtcdWire.base64(keyspace.recordKey(name)))","mod_revision":"\#(revision)","value":"\#(value)"}}"#
        }
        let text = #"{"result":{"events":["#
            + [
                put("junk", EtcdWire.base64("{not json"), 4),
                put("other", try recordValue(NodeRecord(name: "not-other")), 5),
                put("ok", "***not base64***", 6),
                put("ok", try recordValue(good), 7),
            ].joined(separator: ",") + "]}}"
        #expect(try translator.translate(line: line(text)) == .events([.put(good, revision: 7)]))
    }

    @Test func storedValueLeavesTheRevisionToEtcd() throws {
        let encoded = try recordValue(NodeRecord(name: "n", revision: 42))
        let json = try #require(EtcdWire.bytes(base64: encoded)).map { Character(UnicodeScalar($0)) }
        #expect(String(json).contains(#""revision":0"#))
    }

    @Test func compactionCancelMeansResyncOtherCancelsAreErrors() throws {
        let compacted = #"{"result":{"header":{},"canceled":true,"compact_revision":"5"}}"#
        #expect(try translator.translate(line: line(compacted)) == .resyncRequired)
        #expect(throws: EtcdRegistryError.watchCanceled(endpoint: "http://e:1", reason: "permission denied")) {
            try translator.translate(line: line(#"{"result":{"canceled":true,"cancel_reason":"permission denied"}}"#))
        }
        #expect(throws: EtcdRegistryError.server(endpoint: "http://e:1", path: "/v3/watch", code: 14, message: "unavailable")) {
            try translator.translate(line: line(#"{"error":{"grpc_code":14,"http_code":503,"message":"unavailable"}}"#))
        }
        #expect(throws: EtcdRegistryError.self) { try translator.translate(line: line("<html>")) }
    }

    @Test func gatewayErrorBodiesBecomeServerErrors() {
        let body = ByteBuffer(string: #"{"error":"etcdserver: requested lease not found","message":"etcdserver: requested lease not found","code":5}"#)
        let error = EtcdGatewayClient.error(from: body, status: .notFound, endpoint: "http://e:1", path: "/v3/kv/put")
        #expect(error == .server(endpoint: "http://e:1", path: "/v3/kv/put", code: 5, message: "etcdserver: requested lease not found"))
        #expect(error.isLeaseNotFound)
        #expect(EtcdGatewayClient.error(from: ByteBuffer(string: "oops"), status: .badGateway, endpoint: "http://e:1", path: "/v3/x")
            == .httpStatus(endpoint: "http://e:1", path: "/v3/x", status: 502))
    }

    @Test func probeVisitsEveryIDOnceFromAStableStart() {
        let probe = NodeIDProbe(name: "node-7", range: 10...29)
        let order = (0..<probe.count).map(probe.id(at:))
        #expect(Set(order) == Set(10...29))
        #expect(order.count == 20)
        #expect(order.first == NodeIDProbe(name: "node-7", range: 10...29).start)
        #expect(NodeIDProbe.fnv1a("") == 0xcbf2_9ce4_8422_2325)
        #expect(NodeIDProbe.fnv1a("a") == 0xaf63_dc4c_8601_ec8c)  // published FNV-1a 64 test vector
    }

    @Test func configurationErrorsNameTheField() {
        func field(_ configuration: EtcdConfiguration) -> String? {
            do {
                try configuration.validate()
                return nil
            } catch {
                if case .invalidConfiguration(let field, _) = error { return field }
                return "unexpected \(error)"
            }
        }
        #expect(field(EtcdConfiguration(endpoints: ["http://127.0.0.1:2379"])) == nil)
        #expect(field(EtcdConfiguration(endpoints: [])) == "endpoints")
        #expect(field(EtcdConfiguration(endpoints: ["http://a:1", "127.0.0.1:2379"])) == "endpoints[1]")
        #expect(field(EtcdConfiguration(endpoints: ["http://user:secret@a:1"])) == "endpoints[0]")
        #expect(field(EtcdConfiguration(endpoints: ["http://a:1"], prefix: "/no-slash")) == "prefix")
        #expect(field(EtcdConfiguration(endpoints: ["http://a:1"], leaseTTL: .milliseconds(500))) == "leaseTTL")
        #expect(field(EtcdConfiguration(endpoints: ["http://a:1"], nodeIDs: 0...10)) == "nodeIDs")
        #expect(EtcdConfiguration(endpoints: ["http://a:1"], leaseTTL: .milliseconds(2500)).leaseTTLSeconds == 3)
    }

    @Test(arguments: ["http://user:secret@a:1", "user:secret@a:1"])
    func credentialsNeverReachErrorDescriptions(endpoint: String) {
        #expect(throws: EtcdRegistryError.self) { try EtcdConfiguration(endpoints: [endpoint]).validate() }
        do {
            try EtcdConfiguration(endpoints: [endpoint]).validate()
        } catch {
            #expect(!"\(error)".contains("secret"))
        }
    }
}
