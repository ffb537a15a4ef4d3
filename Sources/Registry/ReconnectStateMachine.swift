/// When to (re)connect to the registry: the Open vSwitch `lib/reconnect.c` model, as a pure value.
///
/// Time is passed in (a `Duration` since any fixed origin) and the machine answers what to do; it never
/// sleeps or reads a clock, so a script of events with virtual times tests it completely.
///
/// Backoff: the first failure waits `minBackoff` (1 s), each further failure doubles it up to `maxBackoff`
/// (8 s). A connection that was lost after staying up for at least the current backoff resets the backoff to
/// `minBackoff`; one that drops sooner keeps doubling, so a flapping registry is not hammered.
/// The actual wait is the backoff shortened by a random fraction of at most `jitter`, so nodes that lost the
/// registry together do not reconnect in lockstep.
public struct ReconnectStateMachine: Sendable, Hashable {
    /// Backoff bounds and jitter of the reconnect loop.
    public struct Configuration: Sendable, Hashable {
        public var minBackoff: Duration
        public var maxBackoff: Duration
        /// Fraction (0…1) of the backoff that jitter may remove: 0.2 waits 80–100 % of the backoff.
        public var jitter: Double

        public init(minBackoff: Duration = .seconds(1), maxBackoff: Duration = .seconds(8), jitter: Double = 0.2) {
            precondition(minBackoff > .zero && maxBackoff >= minBackoff, "backoff bounds must satisfy 0 < min <= max")
            precondition((0...1).contains(jitter), "jitter must be within 0…1")
            self.minBackoff = minBackoff
            self.maxBackoff = maxBackoff
            self.jitter = jitter
        }
    }

    /// Where the reconnect loop is: idle, waiting out a backoff, connecting, or connected.
    public enum State: Sendable, Hashable {
        /// Not started.
        case idle
        /// Waiting; connect at `until`.
        case backoff(until: Duration)
        /// A connection attempt is under way.
        case connecting(since: Duration)
        /// Connected and healthy since `since`.
        case active(since: Duration)
    }

    /// What the caller should do next, answered for each reported event.
    public enum Action: Sendable, Hashable {
        /// Start a connection attempt now (then report `connecting`).
        case connect
        /// Nothing to do before `until`.
        case wait(until: Duration)
        /// Nothing to do until an event is reported (idle, connecting or active).
        case none
    }

    public let configuration: Configuration
    public private(set) var state: State = .idle
    /// The current backoff (zero before the first failure).
    public private(set) var backoff: Duration = .zero
    /// Connection attempts started.
    public private(set) var attempts = 0

    public init(configuration: Configuration = .init()) {
        self.configuration = configuration
    }

    /// Starts the machine: the first attempt is due at once.
    public mutating func start(at now: Duration) {
        state = .backoff(until: now)
    }

    /// What to do at `now`.
    public func nextAction(at now: Duration) -> Action {
        switch state {
        case .idle, .connecting, .active: .none
        case .backoff(let until): now >= until ? .connect : .wait(until: until)
        }
    }

    /// A connection attempt started.
    public mutating func connecting(at now: Duration) {
        attempts += 1
        state = .connecting(since: now)
    }

    /// The attempt succeeded: the connection is healthy from `now`.
    public mutating func connected(at now: Duration) {
        state = .active(since: now)
    }

    /// The attempt failed or the connection was lost. `random` (0..<1) picks the jitter.
    /// Returns the wait before the next attempt.
    @discardableResult
    public mutating func disconnected(at now: Duration, random: Double) -> Duration {
        if case .active(let since) = state, now - since >= backoff {
            backoff = configuration.minBackoff
        } else if backoff < configuration.minBackoff {
            backoff = configuration.minBackoff
        } else {
            backoff = min(backoff * 2, configuration.maxBackoff)
        }
        let wait = backoff - backoff * (configuration.jitter * min(max(random, 0), 1))
        state = .backoff(until: now + wait)
        return wait
    }

    /// Stops: no further actions until `start`.
    public mutating func stop() {
        state = .idle
    }
}
