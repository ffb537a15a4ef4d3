/// The time source of `RegistryClient`: any `Clock` whose durations are `Duration`, reduced to "time since
/// the client was created" and "sleep for", so tests can drive the client with a virtual clock.
struct RegistryClock: Sendable {
    let now: @Sendable () -> Duration
    let sleep: @Sendable (Duration) async throws -> Void

    init<C: Clock>(_ clock: C) where C.Duration == Duration {
        let origin = clock.now
        now = { origin.duration(to: clock.now) }
        sleep = { duration in try await clock.sleep(until: clock.now.advanced(by: duration), tolerance: nil) }
    }
}
