/// A change seen by a registry watch, in revision order.
public enum RegistryEvent: Hashable, Sendable {
    /// A record was created or updated at `revision`.
    case put(NodeRecord, revision: Int64)
    /// A record was deleted (by an admin) or its lease expired, at `revision`.
    case deleted(name: String, revision: Int64)
    /// The requested revision is gone (compacted): list again, then watch from the list's revision.
    case resyncRequired
}

/// A snapshot of every record and the revision it reflects.
public struct RegistrySnapshot: Hashable, Sendable {
    public var records: [NodeRecord]
    public var revision: Int64
    public init(records: [NodeRecord], revision: Int64) {
        self.records = records
        self.revision = revision
    }
}

/// The registry protocol one node speaks, implemented by the embedded server's client and by etcd.
public protocol NodeRegistry: Sendable {
    /// Creates or refreshes this node's record and lease; assigns a node ID when `record.nodeID` is 0
    /// (keeping the one the node already holds). Returns the stored record.
    func publish(_ record: NodeRecord) async throws -> NodeRecord
    /// Renews this node's lease.
    func heartbeat(name: String) async throws
    /// Every live record and the revision of the snapshot.
    func list() async throws -> RegistrySnapshot
    /// Every change after `revision`, in order, until the stream ends or throws (connection lost).
    func watch(after revision: Int64) -> AsyncThrowingStream<RegistryEvent, any Error>
}
