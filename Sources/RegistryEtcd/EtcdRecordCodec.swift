import Registry

#if canImport(FoundationEssentials)
    import FoundationEssentials
#else
    import Foundation
#endif

/// Converts between ``NodeRecord`` and the JSON value stored under `<prefix>nodes/<name>`.
struct EtcdRecordCodec: Sendable {
    /// Why a stored key/value is not a usable record. Carries the key, never the value.
    struct BadRecord: Error, CustomStringConvertible {
        var key: String
        var reason: String
        var description: String { "\(key): \(reason)" }
    }

    let keyspace: EtcdKeyspace

    /// The record as base64 JSON (sorted keys, so equal records store equal bytes). `revision` is
    /// stored as 0: etcd assigns it, and `decode` takes it from the key's `mod_revision`.
    func encode(_ record: NodeRecord) throws -> String {
        var record = record
        record.revision = 0
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        return EtcdWire.base64(try encoder.encode(record))
    }

    /// Decodes a stored key/value. The record's `name` must match the key; its `revision` is the
    /// key's `mod_revision` (the revision at which the record was last stored).
    func decode(_ kv: EtcdWire.KeyValue) throws(BadRecord) -> NodeRecord {
        guard let key = EtcdWire.bytes(base64: kv.key) else {
            throw BadRecord(key: String(kv.key.prefix(80)), reason: "key is not base64")
        }
        let printableKey = String(decoding: key.prefix(200), as: UTF8.self)
        guard let name = keyspace.name(fromRecordKey: key) else {
            throw BadRecord(key: printableKey, reason: "not a record key under \(keyspace.recordsPrefix)")
        }
        guard let value = EtcdWire.bytes(base64: kv.value) else {
            throw BadRecord(key: printableKey, reason: "value is not base64")
        }
        var record: NodeRecord
        do {
            record = try JSONDecoder().decode(NodeRecord.self, from: Data(value))
        } catch let error as DecodingError {
            throw BadRecord(key: printableKey, reason: "not a node record: \(Self.summary(of: error))")
        } catch {
            throw BadRecord(key: printableKey, reason: "not a node record: \(error)")
        }
        guard record.name == name else {
            throw BadRecord(
                key: printableKey, reason: "record names \"\(record.name.prefix(80))\", key names \"\(name)\"")
        }
        guard let revision = EtcdWire.int64(kv.mod_revision) else {
            throw BadRecord(key: printableKey, reason: "mod_revision is not an integer")
        }
        record.revision = revision
        return record
    }

    /// The failing field path and reason of a decoding error, without the payload.
    private static func summary(of error: DecodingError) -> String {
        func path(_ context: DecodingError.Context) -> String {
            let p = context.codingPath.map(\.stringValue).joined(separator: ".")
            return p.isEmpty ? "" : "field \(p): "
        }
        switch error {
        case .dataCorrupted(let context): return path(context) + context.debugDescription
        case .keyNotFound(let key, let context): return path(context) + "missing field \(key.stringValue)"
        case .typeMismatch(let type, let context): return path(context) + "expected \(type)"
        case .valueNotFound(let type, let context): return path(context) + "expected \(type), found null"
        @unknown default: return "\(error)"
        }
    }
}
