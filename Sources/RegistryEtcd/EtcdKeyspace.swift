/// Where the registry keeps its keys under the configured prefix:
///
/// - `<prefix>nodes/<name>`: the node's ``NodeRecord`` as JSON, bound to the node's lease.
/// - `<prefix>ids/<nodeID>`: the node's name, bound to the same lease; created only if absent,
///   which is what makes node IDs unique among live nodes.
struct EtcdKeyspace: Sendable, Hashable {
    let prefix: String

    var recordsPrefix: String { prefix + "nodes/" }
    var idsPrefix: String { prefix + "ids/" }

    func recordKey(_ name: String) -> String { recordsPrefix + name }
    func idKey(_ nodeID: UInt16) -> String { idsPrefix + String(nodeID) }

    /// The node name of a record key, or nil when the key is not a record key.
    func name(fromRecordKey key: [UInt8]) -> String? {
        let prefixBytes = Array(recordsPrefix.utf8)
        guard key.count > prefixBytes.count, key.starts(with: prefixBytes) else { return nil }
        return String(validating: key[prefixBytes.count...], as: UTF8.self)
    }

    /// The node ID of an ID key, or nil when the key is not an ID key.
    func nodeID(fromIDKey key: [UInt8]) -> UInt16? {
        let prefixBytes = Array(idsPrefix.utf8)
        guard key.starts(with: prefixBytes) else { return nil }
        guard let text = String(validating: key[prefixBytes.count...], as: UTF8.self) else { return nil }
        return UInt16(text)
    }

    /// The `range_end` that selects every key starting with `prefix`: the prefix with its last
    /// byte incremented (carrying over 0xFF bytes). An all-0xFF prefix gives `[0]` ("to the end").
    static func rangeEnd(ofPrefix prefix: [UInt8]) -> [UInt8] {
        var end = prefix
        while let last = end.last {
            if last < 0xFF {
                end[end.count - 1] = last + 1
                return end
            }
            end.removeLast()
        }
        return [0]
    }

    /// Checks that `name` can be used as the last component of a record key.
    static func validate(name: String) throws(EtcdRegistryError) {
        if name.isEmpty { throw .invalidNodeName(name, reason: "empty") }
        if name.utf8.count > 253 { throw .invalidNodeName(name, reason: "longer than 253 bytes") }
        if name.contains("/") { throw .invalidNodeName(name, reason: "contains '/'") }
        if name.unicodeScalars.contains(where: { $0.properties.generalCategory == .control }) {
            throw .invalidNodeName(name, reason: "contains control characters")
        }
    }
}
