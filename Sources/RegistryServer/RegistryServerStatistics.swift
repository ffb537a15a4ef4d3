import Synchronization

/// Counters of the embedded registry's watch traffic (for tests, diagnostics and benchmarks).
public final class RegistryServerStatistics: Sendable {
    private let streams = Atomic<Int>(0)
    private let opened = Atomic<Int>(0)
    private let polls = Atomic<Int>(0)
    private let refusedConnections = Atomic<Int>(0)

    public init() {}

    /// Streaming watches open now.
    public var openStreams: Int { streams.load(ordering: .relaxed) }
    /// Streaming watches opened since start.
    public var streamsOpened: Int { opened.load(ordering: .relaxed) }
    /// Long-poll watch requests answered since start.
    public var longPolls: Int { polls.load(ordering: .relaxed) }

    func streamOpened() {
        streams.add(1, ordering: .relaxed)
        opened.add(1, ordering: .relaxed)
    }

    func streamClosed() { streams.subtract(1, ordering: .relaxed) }

    func longPollAnswered() { polls.add(1, ordering: .relaxed) }

    /// Connections closed at once because their client, or the server, had too many open.
    public var connectionsRefused: Int { refusedConnections.load(ordering: .relaxed) }

    func connectionRefused() { refusedConnections.add(1, ordering: .relaxed) }
}
