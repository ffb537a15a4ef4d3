import Foundation
import Synchronization

/// Waits until the machine is quiet: no task ran for more than a small share of two consecutive windows.
///
/// The kernel finishes some of the benchmark's own work after the call that caused it returns. Deleting the
/// floor's network namespace queues its teardown: kernel workers flush every SA and policy in it and free their
/// crypto transforms, for ~0.08–0.25 s in the VM rig. A profile of the rotations showed those workers running
/// beside them. The floor's timed batch, meanwhile, followed its own untimed install at once. Started from a quiet
/// machine, neither the floor nor the rotation runs beside leftover work (docs/benchmarks.md).
enum QuietMachine {
    /// Every wait so far, in seconds, and how many of them gave up at the limit.
    private static let waits = Mutex<(seconds: [Double], gaveUp: Int)>(([], 0))

    /// Returns once two consecutive `window`s each saw less than `share` of one CPU busy, or after `limit`
    /// seconds.
    static func wait(window: Double = 0.025, share: Double = 0.1, limit: Double = 1) {
        let start = ScaleBenchmark.monotonicSeconds()
        guard var last = busySeconds() else { return }
        var quietWindows = 0
        var elapsed = 0.0
        while quietWindows < 2 && elapsed < limit {
            usleep(useconds_t(window * 1e6))
            guard let now = busySeconds() else { return }
            quietWindows = now - last < share * window ? quietWindows + 1 : 0
            last = now
            elapsed = ScaleBenchmark.monotonicSeconds() - start
        }
        waits.withLock { w in
            w.seconds.append(elapsed)
            if quietWindows < 2 { w.gaveUp += 1 }
        }
    }

    /// The waits since the last call: median and longest seconds, count, and how many gave up at the limit.
    static func drainSummary() -> (median: Double, longest: Double, count: Int, gaveUp: Int)? {
        let (seconds, gaveUp) = waits.withLock { w in
            defer { w = ([], 0) }
            return (w.seconds, w.gaveUp)
        }
        guard !seconds.isEmpty else { return nil }
        return (ScaleBenchmark.median(seconds), seconds.max()!, seconds.count, gaveUp)
    }

    /// CPU time (seconds) the kernel has run tasks other than the idle task, summed over CPUs: `rq_cpu_time` in
    /// /proc/schedstat (nanoseconds, counted when a task leaves a CPU), or /proc/stat's busy ticks where the
    /// kernel has no schedstat (the host here; 10 ms resolution).
    static func busySeconds() -> Double? {
        if let text = try? String(contentsOfFile: "/proc/schedstat", encoding: .utf8) {
            var sum = 0.0
            var found = false
            for line in text.split(separator: "\n") where line.hasPrefix("cpu") {
                let fields = line.split(separator: " ")
                guard fields.count > 7, let nanoseconds = Double(fields[7]) else { continue }
                sum += nanoseconds / 1e9
                found = true
            }
            if found { return sum }
        }
        guard let text = try? String(contentsOfFile: "/proc/stat", encoding: .utf8),
            let line = text.split(separator: "\n").first(where: { $0.hasPrefix("cpu ") })
        else { return nil }
        // user nice system idle iowait irq softirq steal: busy is all of them but idle and iowait.
        let ticks = line.split(separator: " ").dropFirst().prefix(8).compactMap { Double($0) }
        guard ticks.count == 8 else { return nil }
        let busy = ticks.enumerated().filter { $0.offset != 3 && $0.offset != 4 }.map(\.element).reduce(0, +)
        return busy / Double(sysconf(Int32(_SC_CLK_TCK)))
    }
}
