import Metrics

/// The agent's own metrics (docs/metrics.md). Everything comes from the agent's state, never a kernel dump.
public struct AgentMetrics: Sendable {
    public init() {}

    func rotationStarted() {
        Counter(label: "ipsec_rotations_started_total").increment()
    }

    func rotationCompleted(duration: Duration) {
        Counter(label: "ipsec_rotations_total", dimensions: [("result", "completed")]).increment()
        Timer(label: "ipsec_rotation_duration_seconds", preferredDisplayUnit: .seconds).recordNanoseconds(duration.nanoseconds)
    }

    func phaseDuration(_ phase: RotationPhase, _ duration: Duration) {
        Timer(label: "ipsec_rotation_phase_duration_seconds", dimensions: [("phase", phase.rawValue)],
              preferredDisplayUnit: .seconds).recordNanoseconds(duration.nanoseconds)
    }

    func setPhase(_ phase: RotationPhase) {
        Gauge(label: "ipsec_rotation_phase").record(phase.ordinal)
    }

    func fallbackReclaims(_ n: Int) {
        Counter(label: "ipsec_fallback_reclaims_total").increment(by: n)
    }

    func fingerprintMismatch() {
        Counter(label: "ipsec_key_fingerprint_mismatches_total").increment()
    }

    func keyLoadError(reason: String) {
        Counter(label: "ipsec_key_load_errors_total", dimensions: [("reason", reason)]).increment()
    }

    func xfrmError() {
        Counter(label: "ipsec_xfrm_request_errors_total").increment()
    }

    func reconciled(_ report: ReconcileReport) {
        Timer(label: "ipsec_reconcile_duration_seconds", preferredDisplayUnit: .seconds).recordNanoseconds(report.duration.nanoseconds)
        for (object, actions) in report.repairs {
            for (action, n) in actions {
                Counter(label: "ipsec_reconcile_repairs_total", dimensions: [("object", object), ("action", action)]).increment(by: n)
            }
        }
        if report.errors > 0 { Counter(label: "ipsec_reconcile_errors_total").increment(by: report.errors) }
    }
}

extension Duration {
    var nanoseconds: Int64 {
        components.seconds * 1_000_000_000 + components.attoseconds / 1_000_000_000
    }
}
