import Agent
import IPsecPrimitives
import Registry

/// `RecordPublisher` over the resilient registry client: merges the controller's fields into this node's
/// record. A publish that is not acknowledged within `timeout` fails, so the controller keeps serving
/// (reconcile, ticks) during a registry outage and retries later; the client re-publishes on reconnect.
public struct RegistryRecordPublisher: RecordPublisher {
    public let client: RegistryClient
    public let base: NodeRecord
    public let timeout: Duration

    public init(client: RegistryClient, base: NodeRecord, timeout: Duration = .seconds(5)) {
        self.client = client
        self.base = base
        self.timeout = timeout
    }

    struct Timeout: Error, CustomStringConvertible {
        var description: String { "the registry did not acknowledge in time" }
    }

    public func publish(_ update: NodeRecordUpdate) async throws -> Int64 {
        var record = await client.acknowledgedRecord ?? base
        record.spi = update.spi
        record.encryptSpi = update.encryptSpi
        record.keyFingerprint = update.keyFingerprint
        record.xfrmRevision = update.xfrmRevision
        return try await publish(record).revision
    }

    /// Publishes a whole record with the timeout.
    public func publish(_ record: NodeRecord) async throws -> NodeRecord {
        try await withThrowingTaskGroup(of: NodeRecord?.self) { group in
            group.addTask { try await client.publish(record) }
            group.addTask {
                try await Task.sleep(for: timeout)
                return nil
            }
            defer { group.cancelAll() }
            guard let first = try await group.next(), let stored = first else { throw Timeout() }
            return stored
        }
    }
}
