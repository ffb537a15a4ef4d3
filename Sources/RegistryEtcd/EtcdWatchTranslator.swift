import Logging
import NIOCore
import Registry

#if canImport(FoundationEssentials)
    import FoundationEssentials
#else
    import Foundation
#endif

/// Turns the lines of a `/v3/watch` stream on the records prefix into ``RegistryEvent``s.
///
/// - An event without `type` is a PUT → `.put(record, revision: mod_revision)`.
/// - `"type":"DELETE"` (an admin delete or lease expiry) → `.deleted(name:revision:)`.
/// - `canceled` with a `compact_revision` → `.resyncRequired`; any other cancel is an error.
/// - A PUT whose value is not a valid record is skipped with a log line.
struct EtcdWatchTranslator: Sendable {
    enum Outcome: Equatable, Sendable {
        /// Zero or more events, in revision order (the `created` and progress messages carry none).
        case events([RegistryEvent])
        /// The start revision was compacted away: the watch is over, the caller must list again.
        case resyncRequired
    }

    let codec: EtcdRecordCodec
    let endpoint: String
    let logger: Logger

    func translate(line: ByteBuffer) throws(EtcdRegistryError) -> Outcome {
        let envelope: EtcdWire.WatchEnvelope
        do {
            envelope = try JSONDecoder().decode(EtcdWire.WatchEnvelope.self, from: Data(line.readableBytesView))
        } catch {
            throw .malformedResponse(
                endpoint: endpoint, path: "/v3/watch", reason: "stream line is not a watch response: \(error)")
        }
        if let error = envelope.error {
            throw .server(endpoint: endpoint, path: "/v3/watch", code: error.code, message: error.message)
        }
        guard let response = envelope.result else {
            throw .malformedResponse(
                endpoint: endpoint, path: "/v3/watch", reason: "stream line has neither result nor error")
        }
        if response.canceled == true {
            if let compacted = EtcdWire.int64(response.compact_revision), compacted > 0 {
                logger.info("etcd watch start revision compacted", metadata: ["compactRevision": "\(compacted)"])
                return .resyncRequired
            }
            throw .watchCanceled(endpoint: endpoint, reason: response.cancel_reason ?? "no reason given")
        }
        var events: [RegistryEvent] = []
        for event in response.events ?? [] {
            if let translated = try translate(event) { events.append(translated) }
        }
        return .events(events)
    }

    private func translate(_ event: EtcdWire.Event) throws(EtcdRegistryError) -> RegistryEvent? {
        guard let kv = event.kv, let revision = EtcdWire.int64(kv.mod_revision), revision > 0 else {
            throw .malformedResponse(endpoint: endpoint, path: "/v3/watch", reason: "event without key or mod_revision")
        }
        switch event.type {
        case nil, "PUT":
            do {
                return .put(try codec.decode(kv), revision: revision)
            } catch {
                logger.warning(
                    "skipping invalid node record in etcd",
                    metadata: ["problem": "\(error)", "revision": "\(revision)"])
                return nil
            }
        case "DELETE":
            guard let key = EtcdWire.bytes(base64: kv.key), let name = codec.keyspace.name(fromRecordKey: key) else {
                logger.warning(
                    "skipping delete of a key outside the records prefix", metadata: ["revision": "\(revision)"])
                return nil
            }
            return .deleted(name: name, revision: revision)
        case let other?:
            throw .malformedResponse(
                endpoint: endpoint, path: "/v3/watch", reason: "unknown event type \(other.prefix(40))")
        }
    }
}
