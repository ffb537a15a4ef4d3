import NIOCore
import Synchronization

/// The open streaming watches (`GET /v1/watch?after=R&stream=1`) and the bytes waiting for each.
///
/// The store encodes every batch of changes once (one NDJSON line) and `broadcast` hands the same
/// `ByteBuffer` (reference-counted storage, never copied) to every open stream; each stream's handler task
/// drains its queue and writes the lines to its connection. A stream whose client does not read falls
/// behind: when its queue exceeds `maxPendingLines` the queue is dropped, the stream gets one resync line
/// instead and ends (the client lists and watches again).
final class WatchStreamHub: Sendable {
    private struct State {
        var subscribers: [Int: WatchStreamSubscriber] = [:]
        var nextID = 0
        var closed = false
    }

    let maxPendingLines: Int
    private let state = Mutex(State())

    init(maxPendingLines: Int = 4096) {
        self.maxPendingLines = max(1, maxPendingLines)
    }

    /// A new subscriber, or nil after `finishAll` (shutdown). Call on the store's executor, in the same
    /// turn as reading the backlog, so no change falls between the backlog and the first broadcast.
    func subscribe() -> WatchStreamSubscriber? {
        state.withLock { state in
            guard !state.closed else { return nil }
            let subscriber = WatchStreamSubscriber(id: state.nextID, maxPendingLines: maxPendingLines)
            state.nextID += 1
            state.subscribers[subscriber.id] = subscriber
            return subscriber
        }
    }

    func remove(_ subscriber: WatchStreamSubscriber) {
        _ = state.withLock { $0.subscribers.removeValue(forKey: subscriber.id) }
        subscriber.finish()
    }

    var count: Int { state.withLock { $0.subscribers.count } }

    /// Queues `line` on every open stream. `resyncLine` is built (once) only if a stream overflows.
    func broadcast(_ line: ByteBuffer, resyncLine: () -> ByteBuffer) {
        let subscribers = state.withLock { Array($0.subscribers.values) }
        var resync: ByteBuffer?
        var overflowed: [WatchStreamSubscriber] = []
        for subscriber in subscribers where !subscriber.push(line) {
            overflowed.append(subscriber)
        }
        guard !overflowed.isEmpty else { return }
        state.withLock { state in
            for subscriber in overflowed { state.subscribers.removeValue(forKey: subscriber.id) }
        }
        for subscriber in overflowed {
            if resync == nil { resync = resyncLine() }
            subscriber.replaceQueueAndFinish(with: resync!)
        }
    }

    /// Ends every open stream with `line` in place of its queue (new streams are still accepted).
    func resyncAll(with line: ByteBuffer) {
        let subscribers = state.withLock { state in
            defer { state.subscribers.removeAll() }
            return Array(state.subscribers.values)
        }
        for subscriber in subscribers { subscriber.replaceQueueAndFinish(with: line) }
    }

    /// Ends every stream (after its queued lines) and refuses new ones: graceful shutdown.
    func finishAll() {
        let subscribers = state.withLock { state in
            state.closed = true
            let all = Array(state.subscribers.values)
            state.subscribers.removeAll()
            return all
        }
        for subscriber in subscribers { subscriber.finish() }
    }
}

/// One open stream's queue: the hub pushes lines, the stream's handler task takes them in batches.
final class WatchStreamSubscriber: Sendable {
    private struct State {
        var pending: [ByteBuffer] = []
        var waiter: CheckedContinuation<[ByteBuffer]?, Never>?
        var finished = false
    }

    let id: Int
    private let maxPendingLines: Int
    private let state = Mutex(State())

    fileprivate init(id: Int, maxPendingLines: Int) {
        self.id = id
        self.maxPendingLines = maxPendingLines
    }

    /// Queues a line; false when the queue is full (the caller then ends the stream with a resync).
    fileprivate func push(_ line: ByteBuffer) -> Bool {
        let (waiter, accepted): (CheckedContinuation<[ByteBuffer]?, Never>?, Bool) = state.withLock { state in
            if state.finished { return (nil, true) }
            if let waiter = state.waiter {
                state.waiter = nil
                return (waiter, true)
            }
            guard state.pending.count < maxPendingLines else { return (nil, false) }
            state.pending.append(line)
            return (nil, true)
        }
        waiter?.resume(returning: [line])
        return accepted
    }

    /// Drops the queue, queues `line` as the last one and ends the stream.
    fileprivate func replaceQueueAndFinish(with line: ByteBuffer) {
        let waiter = state.withLock { state -> CheckedContinuation<[ByteBuffer]?, Never>? in
            guard !state.finished else { return nil }
            state.finished = true
            if let waiter = state.waiter {
                state.waiter = nil
                return waiter
            }
            state.pending = [line]
            return nil
        }
        waiter?.resume(returning: [line])
    }

    /// Ends the stream once the queued lines are taken.
    func finish() {
        let waiter = state.withLock { state -> CheckedContinuation<[ByteBuffer]?, Never>? in
            state.finished = true
            defer { state.waiter = nil }
            return state.waiter
        }
        waiter?.resume(returning: nil)
    }

    /// Every queued line (waiting for at least one), or nil when the stream ended or the task was cancelled.
    func next() async -> [ByteBuffer]? {
        if let ready = takeIfReady() { return ready.isEmpty ? nil : ready }
        return await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<[ByteBuffer]?, Never>) in
                let immediate: [ByteBuffer]?? = state.withLock { state in
                    if !state.pending.isEmpty {
                        defer { state.pending.removeAll(keepingCapacity: true) }
                        return .some(state.pending)
                    }
                    if state.finished || Task.isCancelled { return .some(nil) }
                    state.waiter = continuation
                    return .none
                }
                if let immediate { continuation.resume(returning: immediate) }
            }
        } onCancel: {
            finish()
        }
    }

    /// Queued lines if any, [] when finished with nothing queued, nil when the caller must wait.
    private func takeIfReady() -> [ByteBuffer]? {
        state.withLock { state in
            if !state.pending.isEmpty {
                defer { state.pending.removeAll(keepingCapacity: true) }
                return state.pending
            }
            return state.finished ? [] : nil
        }
    }
}
