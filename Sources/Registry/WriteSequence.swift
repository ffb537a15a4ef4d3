import Synchronization

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// Stamps each record a node writes with a `sequence` larger than any before it: the wall clock in milliseconds,
/// or one more than the last stamp or the stored value when the clock is behind them.
///
/// The registry stores a record only if its `sequence` is larger than the stored one, so a captured request
/// replayed later (with its old sequence) is refused, even across the node's reboots.
public final class WriteSequence: Sendable {
    private let last = Mutex<Int64>(0)
    private let wallMillis: @Sendable () -> Int64

    public init(wallMillis: @escaping @Sendable () -> Int64 = WriteSequence.wallClockMillis) {
        self.wallMillis = wallMillis
    }

    /// The sequence for a write of a record whose stored version has `stored` (0 if unknown).
    public func next(after stored: Int64) -> Int64 {
        let now = wallMillis()
        return last.withLock { last in
            last = max(now, stored + 1, last + 1)
            return last
        }
    }

    public static func wallClockMillis() -> Int64 {
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        return Int64(ts.tv_sec) * 1000 + Int64(ts.tv_nsec) / 1_000_000
    }
}
