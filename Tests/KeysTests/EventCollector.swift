import Synchronization
@testable import Keys

/// Drains a watcher's events in a task and lets a test wait, with a generous timeout, for the
/// n-th one. The timeout only bounds a broken test; it is never an assertion about timing.
final class EventCollector: Sendable {
    private let state = Mutex<(events: [KeyFileEvent], finished: Bool)>(([], false))

    /// Starts draining `stream`; the returned task ends when the stream finishes.
    @discardableResult
    func drain(_ stream: AsyncStream<KeyFileEvent>) -> Task<Void, Never> {
        Task {
            for await event in stream {
                state.withLock { $0.events.append(event) }
            }
            state.withLock { $0.finished = true }
        }
    }

    var events: [KeyFileEvent] { state.withLock { $0.events } }
    var finished: Bool { state.withLock { $0.finished } }

    /// Waits until at least `count` events arrived (or the timeout passed); returns all events so far.
    func waitForEvents(_ count: Int, timeout: Duration = .seconds(30)) async -> [KeyFileEvent] {
        await waitUntil(timeout: timeout) { $0.events.count >= count }
        return events
    }

    /// Waits until the stream finished (or the timeout passed); returns whether it finished.
    func waitForFinish(timeout: Duration = .seconds(30)) async -> Bool {
        await waitUntil(timeout: timeout) { $0.finished }
        return finished
    }

    private func waitUntil(timeout: Duration, _ condition: ((events: [KeyFileEvent], finished: Bool)) -> Bool) async {
        let deadline = ContinuousClock.now + timeout
        while !state.withLock({ condition($0) }) && ContinuousClock.now < deadline {
            try? await Task.sleep(for: .milliseconds(5))
        }
    }
}
