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

/// Streaming watches: each change is encoded once and queued on every open stream (`WatchStreamHub`); a
/// subscriber that asks for compacted history gets a resync line.
extension RegistryStore {
    // MARK: Streaming watches

    /// What `subscribe(after:)` answers.
    enum Subscription: Sendable {
        /// The backlog after the requested revision (lines of at most 1000 events; at least one line, empty
        /// events when there is no backlog), then every later change through `subscriber`.
        case subscribed(WatchStreamSubscriber, backlog: [ByteBuffer])
        case compacted(compactedRevision: Int64)
        /// The server is shutting down.
        case closed
    }

    /// Opens a stream after `after`: the backlog and the registration happen in one actor turn, so the
    /// stream sees every change exactly once and in order.
    func subscribe(after: Int64, maxEventsPerLine: Int = 1000) throws -> Subscription {
        guard after >= compactedRevision, after <= revision else {
            return .compacted(compactedRevision: compactedRevision)
        }
        guard !closing else { return .closed }
        var backlog: [ByteBuffer] = []
        var cursor = Int(after - compactedRevision)
        repeat {
            let end = min(history.count, cursor + max(1, maxEventsPerLine))
            let chunk = Array(history[cursor..<end])
            let lineRevision =
                end == history.count ? revision : (chunk.last.map(RegistryStore.revision(of:)) ?? revision)
            backlog.append(
                try RegistryStore.encodeLine(
                    RegistryWire.WatchResponse(
                        revision: lineRevision, events: chunk.map(RegistryWire.Event.init))))
            cursor = end
        } while cursor < history.count
        guard let subscriber = streams.subscribe() else { return .closed }
        return .subscribed(subscriber, backlog: backlog)
    }

    /// Queues a keepalive line (`{"revision":R,"events":[]}`) on every open stream.
    func sendKeepalive() {
        guard streams.count > 0 else { return }
        broadcast(RegistryWire.WatchResponse(revision: revision, events: []))
    }

    /// Sends a keepalive every `interval` until cancelled.
    func runKeepalive(interval: Duration) async {
        while !Task.isCancelled {
            do { try await Task.sleep(for: interval) } catch { return }
            sendKeepalive()
        }
    }

    func broadcast(_ events: [RegistryEvent]) {
        guard !events.isEmpty, streams.count > 0 else { return }
        broadcast(RegistryWire.WatchResponse(revision: revision, events: events.map(RegistryWire.Event.init)))
    }

    /// Encodes `response` once and queues the same bytes on every stream. A change that cannot be encoded
    /// (never expected) ends every stream with a resync rather than skipping it.
    func broadcast(_ response: RegistryWire.WatchResponse) {
        do {
            streams.broadcast(try RegistryStore.encodeLine(response), resyncLine: resyncLine)
        } catch {
            logger.error("encoding a watch line failed; streams resync", metadata: ["error": "\(error)"])
            streams.resyncAll(with: resyncLine())
        }
    }

    /// Told to a stream that fell behind (or whose change could not be encoded), as its last line: the
    /// same body as a 410 answer.
    func resyncLine() -> ByteBuffer {
        ByteBuffer(
            string:
                "{\"error\":\"watch stream fell behind; list and watch again\",\"compactedRevision\":\(compactedRevision)}\n"
        )
    }

    static func revision(of event: RegistryEvent) -> Int64 {
        switch event {
        case .put(_, let r), .deleted(_, let r): r
        case .resyncRequired: 0
        }
    }

    /// One NDJSON line: the JSON of `value` and a newline.
    static func encodeLine(_ value: some Encodable) throws -> ByteBuffer {
        var buffer = ByteBuffer(bytes: try JSONEncoder().encode(value))
        buffer.writeInteger(UInt8(ascii: "\n"))
        return buffer
    }
}
