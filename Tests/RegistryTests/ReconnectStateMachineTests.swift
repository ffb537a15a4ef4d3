import Registry
import Testing

@Suite struct ReconnectStateMachineTests {
    private let noJitter = ReconnectStateMachine.Configuration(jitter: 0)

    @Test func firstAttemptIsImmediateThenBackoffDoublesToTheMaximum() {
        var machine = ReconnectStateMachine(configuration: noJitter)
        #expect(machine.nextAction(at: .zero) == .none)
        machine.start(at: .zero)
        #expect(machine.nextAction(at: .zero) == .connect)
        var now = Duration.zero
        var waits: [Duration] = []
        for _ in 0..<6 {
            machine.connecting(at: now)
            #expect(machine.nextAction(at: now) == .none)
            let wait = machine.disconnected(at: now, random: 0)
            waits.append(wait)
            #expect(machine.nextAction(at: now + wait - .milliseconds(1)) == .wait(until: now + wait))
            now += wait
            #expect(machine.nextAction(at: now) == .connect)
        }
        #expect(waits == [1, 2, 4, 8, 8, 8].map { Duration.seconds($0) })
        #expect(machine.attempts == 6)
    }

    @Test func backoffResetsOnlyAfterStayingUpForTheCurrentBackoff() {
        var machine = ReconnectStateMachine(configuration: noJitter)
        machine.start(at: .zero)
        var now = Duration.zero
        // Fail three times: backoff reaches 4 s.
        for _ in 0..<3 {
            machine.connecting(at: now)
            now += machine.disconnected(at: now, random: 0)
        }
        #expect(machine.backoff == .seconds(4))
        // Up for 3.9 s (< 4 s): still flapping, backoff doubles.
        machine.connecting(at: now)
        machine.connected(at: now)
        now += .milliseconds(3900)
        #expect(machine.disconnected(at: now, random: 0) == .seconds(8))
        now += .seconds(8)
        // Up for exactly 8 s (>= backoff): reset to the minimum.
        machine.connecting(at: now)
        machine.connected(at: now)
        now += .seconds(8)
        #expect(machine.disconnected(at: now, random: 0) == .seconds(1))
        #expect(machine.backoff == .seconds(1))
    }

    @Test func failedAttemptWithoutConnectionNeverResets() {
        var machine = ReconnectStateMachine(configuration: noJitter)
        machine.start(at: .zero)
        machine.connecting(at: .zero)
        machine.disconnected(at: .zero, random: 0)
        // A connection attempt that hangs for a long time and then fails is not "healthy".
        machine.connecting(at: .seconds(1))
        #expect(machine.disconnected(at: .seconds(100), random: 0) == .seconds(2))
    }

    @Test func jitterShortensTheWaitWithinItsFraction() {
        var machine = ReconnectStateMachine(configuration: .init(jitter: 0.2))
        machine.start(at: .zero)
        machine.connecting(at: .zero)
        #expect(machine.disconnected(at: .zero, random: 0.5) == .milliseconds(900))
        machine.connecting(at: .seconds(1))
        #expect(machine.disconnected(at: .seconds(1), random: 0.999) > .milliseconds(1600))
        machine.connecting(at: .seconds(3))
        #expect(machine.disconnected(at: .seconds(3), random: 0) == .seconds(4))
        #expect(machine.backoff == .seconds(4))
    }
}
