import CoreMetrics
import Synchronization

/// Turns successive reads of `/proc/net/xfrm_stat` into `ipsec_xfrm_errors_total{direction,error}` counters.
/// Reading the file is cheap (no netlink dump); it happens on each scrape.
public final class XFRMErrorCounters: Sendable {
    /// Whether the kernel exposes its XFRM statistics, so a scrape can tell "no errors" from "no counters".
    public enum Availability: Equatable, Sendable {
        case available
        /// The file is absent or unreadable (no CONFIG_XFRM_STATISTICS): the family is not exported.
        case unavailable(String)
    }

    private let path: String
    private let previous = Mutex<XFRMStatistics?>(nil)
    private let read: @Sendable (String) -> String?
    private let factory: any MetricsFactory

    public init(
        path: String = "/proc/net/xfrm_stat", factory: any MetricsFactory,
        read: @escaping @Sendable (String) -> String? = XFRMErrorCounters.readFile
    ) {
        self.path = path
        self.factory = factory
        self.read = read
    }

    /// Reads the file and adds the increments to the counters. Returns why nothing was exported, if so.
    @discardableResult
    public func refresh() -> Availability {
        guard let text = read(path) else {
            return .unavailable("\(path) is not readable (kernel without CONFIG_XFRM_STATISTICS?)")
        }
        guard let stats = XFRMStatistics.parse(text) else {
            return .unavailable("\(path) has no XFRM counters in the expected format")
        }
        let increments = previous.withLock { prev -> [XFRMStatistics.Key: UInt64] in
            defer { prev = stats }
            return stats.increments(since: prev)
        }
        for (key, n) in increments {
            let c = Counter(
                label: "ipsec_xfrm_errors_total", dimensions: [("direction", key.direction), ("error", key.error)],
                factory: factory)
            if n > 0 { c.increment(by: Int64(clamping: n)) } else { c.increment(by: 0) }
        }
        return .available
    }

    public static let readFile: @Sendable (String) -> String? = { path in
        guard let f = fopen(path, "r") else { return nil }
        defer { fclose(f) }
        var bytes: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 4096)
        while true {
            let n = fread(&buffer, 1, buffer.count, f)
            if n <= 0 { break }
            bytes += buffer[0..<n]
        }
        return String(decoding: bytes, as: UTF8.self)
    }
}

#if canImport(Glibc)
    import Glibc
#endif
