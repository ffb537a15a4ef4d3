import Metrics

/// The agent's own metrics (docs/metrics.md). Everything comes from the agent's state, never a kernel dump.
public struct AgentMetrics: Sendable {
    private let factory: any MetricsFactory

    /// Uses `factory`, or the process-wide `MetricsSystem` factory.
    public init(factory: (any MetricsFactory)? = nil) {
        self.factory = factory ?? MetricsSystem.factory
    }

    func rotationStarted() {
        Counter(label: "ipsec_rotations_started_total", factory: factory).increment()
    }

    func rotationCompleted(duration: Duration) {
        Counter(label: "ipsec_rotations_total", dimensions: [("result", "completed")], factory: factory).increment()
        Timer(label: "ipsec_rotation_duration_seconds", preferredDisplayUnit: .seconds, factory: factory)
            .recordNanoseconds(duration.nanoseconds)
    }

    func phaseDuration(_ phase: RotationPhase, _ duration: Duration) {
        Timer(
            label: "ipsec_rotation_phase_duration_seconds", dimensions: [("phase", phase.rawValue)],
            preferredDisplayUnit: .seconds, factory: factory
        ).recordNanoseconds(duration.nanoseconds)
    }

    /// The pod MTU of the current key's SAs (`ESPTunnelMTU`).
    public func podMTU(_ bytes: Int) {
        Gauge(label: "ipsec_pod_mtu_bytes", factory: factory).record(bytes)
    }

    func setPhase(_ phase: RotationPhase) {
        Gauge(label: "ipsec_rotation_phase", factory: factory).record(phase.ordinal)
    }

    func fallbackReclaims(_ n: Int) {
        Counter(label: "ipsec_fallback_reclaims_total", factory: factory).increment(by: n)
    }

    func fingerprintMismatch() {
        Counter(label: "ipsec_key_fingerprint_mismatches_total", factory: factory).increment()
    }

    func keyLoadError(reason: String) {
        Counter(label: "ipsec_key_load_errors_total", dimensions: [("reason", reason)], factory: factory).increment()
    }

    func peerRecordRejected(reason: String) {
        Counter(label: "ipsec_peer_records_rejected_total", dimensions: [("reason", reason)], factory: factory)
            .increment()
    }

    func xfrmError() {
        Counter(label: "ipsec_xfrm_request_errors_total", factory: factory).increment()
    }

    func reconciled(_ report: ReconcileReport) {
        Timer(label: "ipsec_reconcile_duration_seconds", preferredDisplayUnit: .seconds, factory: factory)
            .recordNanoseconds(report.duration.nanoseconds)
        for (object, actions) in report.repairs {
            for (action, n) in actions {
                Counter(
                    label: "ipsec_reconcile_repairs_total", dimensions: [("object", object), ("action", action)],
                    factory: factory
                ).increment(by: n)
            }
        }
        if report.errors > 0 {
            Counter(label: "ipsec_reconcile_errors_total", factory: factory).increment(by: report.errors)
        }
    }
}

extension Duration {
    var nanoseconds: Int64 {
        components.seconds * 1_000_000_000 + components.attoseconds / 1_000_000_000
    }
}
