import CoreMetrics
import Foundation
import Prometheus
import Synchronization
import Telemetry
import TestSupport
import Testing

@Suite struct XFRMStatisticsTests {
    static let sample = """
    XfrmInError             \t0
    XfrmInNoStates          \t7
    XfrmInStateProtoError   \t2
    XfrmOutNoStates         \t1
    XfrmOutPolBlock         \t3
    XfrmInStateDirError     \t0
    XfrmAcquireError        \t0
    """

    @Test func parsesAndLabelsLikeCilium() throws {
        let s = try #require(XFRMStatistics.parse(Self.sample))
        #expect(s.values[.init(direction: "inbound", error: "no_state")] == 7)
        #expect(s.values[.init(direction: "inbound", error: "state_protocol")] == 2)
        #expect(s.values[.init(direction: "outbound", error: "policy_blocked")] == 3)
        #expect(s.values[.init(direction: "outbound", error: "no_state")] == 1)
        #expect(s.values[.init(direction: "inbound", error: "state_dir_error")] == 0)
    }

    @Test func rejectsCorruptText() {
        #expect(XFRMStatistics.parse("XfrmInNoStates seven\n") == nil)
        #expect(XFRMStatistics.parse("") == nil)
    }

    @Test func incrementsHandleResets() throws {
        let a = try #require(XFRMStatistics.parse("XfrmInNoStates 5\nXfrmOutNoStates 9\n"))
        let b = try #require(XFRMStatistics.parse("XfrmInNoStates 8\nXfrmOutNoStates 2\n"))
        let inc = b.increments(since: a)
        #expect(inc[.init(direction: "inbound", error: "no_state")] == 3)
        #expect(inc[.init(direction: "outbound", error: "no_state")] == 2)  // reset: the new value counts
    }

    @Test func hostFileParsesWhenPresent() throws {
        guard let text = XFRMErrorCounters.readFile("/proc/net/xfrm_stat") else { return }
        let s = try #require(XFRMStatistics.parse(text))
        #expect(s.values.keys.contains(.init(direction: "inbound", error: "no_state")))
    }
}

@Suite struct ExpositionTests {
    /// Every metric of the catalog, touched once, validated by promtool (Debian's prometheus package).
    @Test func exportedFamiliesPassPromtool() async throws {
        let registry = PrometheusCollectorRegistry()
        let factory = CatalogMetricsFactory(registry: registry)
        let stat = Mutex(XFRMStatisticsTests.sample)
        let counters = XFRMErrorCounters(factory: factory, read: { _ in stat.withLock { $0 } })
        #expect(counters.refresh() == .available)
        stat.withLock { $0 = $0.replacingOccurrences(of: "NoStates          \t7", with: "NoStates          \t10") }
        counters.refresh()
        Counter(label: "ipsec_reconcile_repairs_total", dimensions: [("object", "state"), ("action", "add")], factory: factory).increment(by: 2)
        Timer(label: "ipsec_rotation_phase_duration_seconds", dimensions: [("phase", "xfrm")], factory: factory).recordMilliseconds(12)
        Gauge(label: "ipsec_registry_connected", factory: factory).record(1)
        let text = registry.emitToString()
        #expect(text.contains(#"ipsec_xfrm_errors_total{direction="inbound",error="no_state"} 10"#))
        #expect(text.contains("# HELP ipsec_reconcile_repairs_total"))
        #expect(text.contains("ipsec_rotation_phase_duration_seconds_bucket"))

        guard FileManager.default.isExecutableFile(atPath: "/usr/bin/promtool") else {
            Issue.record("promtool missing: run scripts/bootstrap")
            return
        }
        let (status, output) = try await Shell.status(["promtool", "check", "metrics"], input: text)
        #expect(status == 0, "promtool: \(output)")
    }

    @Test func missingStatisticsFileIsReportedNotExported() {
        let registry = PrometheusCollectorRegistry()
        let counters = XFRMErrorCounters(path: "/nonexistent/xfrm_stat", factory: CatalogMetricsFactory(registry: registry))
        guard case .unavailable(let why) = counters.refresh() else { Issue.record("expected unavailable"); return }
        #expect(why.contains("/nonexistent/xfrm_stat"))
        #expect(!registry.emitToString().contains("ipsec_xfrm_errors_total"))
    }
}

@Suite struct AlertRulesTests {
    @Test func alertRulesPassPromtoolAndUseExportedNames() async throws {
        let path = #filePath.replacingOccurrences(of: "Tests/TelemetryTests/TelemetryTests.swift", with: "docs/alerts.yml")
        let rules = try String(contentsOfFile: path, encoding: .utf8)
        // Every metric an alert reads is one the agent exports.
        for name in rules.split(whereSeparator: { !($0.isLetter || $0 == "_") }) where name.hasPrefix("ipsec_") {
            #expect(MetricCatalog.help[String(name)] != nil, "alert uses unknown metric \(name)")
        }
        guard FileManager.default.isExecutableFile(atPath: "/usr/bin/promtool") else {
            Issue.record("promtool missing: run scripts/bootstrap")
            return
        }
        let (status, output) = try await Shell.status(["promtool", "check", "rules", path])
        #expect(status == 0, "promtool: \(output)")
        #expect(output.contains("SUCCESS: 7 rules found"))
    }
}
