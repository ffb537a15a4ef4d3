import Agent
import CoreMetrics
import Logging
import Prometheus
import Registry
import Synchronization
import Telemetry

/// Brings the gauges up to date just before a scrape, from the agent's own state: no kernel dump per scrape
/// (the XFRM error counters come from /proc/net/xfrm_stat, a file read).
public final class TelemetryRefresher: Sendable {
    public let registry: PrometheusCollectorRegistry
    public let catalogFactory: CatalogMetricsFactory
    private let xfrmErrors: XFRMErrorCounters
    private let reported = Mutex<(reconnects: Int, watchEvents: Int, statWarned: Bool)>((0, 0, false))
    private let logger: Logger?

    public init(
        registry: PrometheusCollectorRegistry, xfrmStatPath: String = "/proc/net/xfrm_stat", logger: Logger? = nil
    ) {
        self.registry = registry
        self.catalogFactory = CatalogMetricsFactory(registry: registry)
        self.xfrmErrors = XFRMErrorCounters(path: xfrmStatPath, factory: catalogFactory)
        self.logger = logger
        CoreMetrics.Gauge(
            label: "ipsec_build_info", dimensions: [("version", AgentVersion.version), ("swift", AgentVersion.swift)],
            factory: catalogFactory
        ).record(1)
    }

    func gauge(_ name: String, _ dims: [(String, String)] = []) -> CoreMetrics.Gauge {
        CoreMetrics.Gauge(label: name, dimensions: dims, factory: catalogFactory)
    }

    public func refresh(_ handle: AgentHandle) async {
        if case .unavailable(let why) = xfrmErrors.refresh() {
            let first = reported.withLock { r in
                defer { r.statWarned = true }
                return !r.statWarned
            }
            if first { logger?.warning("kernel XFRM error counters not exported: \(why)") }
        }
        gauge("ipsec_key_file_insecure_permissions").record(handle.insecureKeyFile ? 1 : 0)
        if let controller = handle.controller {
            let status = await controller.status()
            let owned = await controller.ownedObjectCounts()
            gauge("ipsec_keys_in_use").record(status.keysInUse.count)
            gauge("ipsec_local_key_id").record(Int(status.encryptKey ?? 0))
            gauge("ipsec_advertised_key_id").record(Int(status.advertisedKey ?? 0))
            gauge("ipsec_rotation_phase").record(status.phase.ordinal)
            gauge("ipsec_ready").record(await controller.isReady() ? 1 : 0)
            if let s = status.secondsSinceRotation { gauge("ipsec_seconds_since_last_rotation").record(s) }
            var byKey = [Int](repeating: 0, count: 16)
            for p in status.peers { byKey[Int(p.spi ?? 0)] += 1 }
            for k in 0...15 { gauge("ipsec_peers_by_advertised_key", [("key_id", String(k))]).record(byKey[k]) }
            gauge("ipsec_owned_states", [("direction", "in")]).record(owned.statesIn)
            gauge("ipsec_owned_states", [("direction", "out")]).record(owned.statesOut)
            for dir in ["in", "out", "fwd"] {
                gauge("ipsec_owned_policies", [("direction", dir)]).record(owned.policies[dir] ?? 0)
            }
        }
        if let client = handle.registryClient {
            let connected = await client.connectionState == .connected
            let reconnects = await client.reconnectCount
            let events = await client.watchEventCount
            gauge("ipsec_registry_connected").record(connected ? 1 : 0)
            let (dr, de) = reported.withLock { r -> (Int, Int) in
                defer { r.reconnects = reconnects; r.watchEvents = events }
                return (max(0, reconnects - r.reconnects), max(0, events - r.watchEvents))
            }
            CoreMetrics.Counter(label: "ipsec_registry_reconnects_total", factory: catalogFactory).increment(by: dr)
            CoreMetrics.Counter(label: "ipsec_registry_watch_events_total", factory: catalogFactory).increment(by: de)
        }
    }
}

/// Version strings for `--version` and `ipsec_build_info`.
public enum AgentVersion {
    public static let version = "0.1.0"
    #if compiler(>=6.3)
        public static let swift = "6.3"
    #elseif compiler(>=6.2)
        public static let swift = "6.2"
    #else
        public static let swift = "6.x"
    #endif
}
