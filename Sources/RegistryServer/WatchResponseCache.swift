import NIOCore
import Synchronization

/// The last encoded watch answer, keyed by the request's `after` and the registry revision it reflects.
/// After a change, every waiting watcher asks for the same events: one JSON encoding serves them all.
final class WatchResponseCache: Sendable {
    private struct Entry {
        var after: Int64
        var revision: Int64
        var body: ByteBuffer
    }

    private let entry = Mutex<Entry?>(nil)

    /// The cached body for (`after`, `revision`), or the one `encode` makes (then cached).
    func body(after: Int64, revision: Int64, encode: () throws -> ByteBuffer) rethrows -> ByteBuffer {
        if let cached = entry.withLock({ $0 }), cached.after == after, cached.revision == revision {
            return cached.body
        }
        let body = try encode()
        entry.withLock { $0 = Entry(after: after, revision: revision, body: body) }
        return body
    }
}
