/// Every metric ipsec-agent exports, with its help text (docs/metrics.md is the operator's copy).
/// Exporting a name that is not here is a programming error caught by the tests.
public enum MetricCatalog {
    public static let help: [String: String] = [
        // Kernel
        "ipsec_xfrm_errors_total":
            "Kernel XFRM errors from /proc/net/xfrm_stat, by direction and error (Cilium's label values).",
        // Keys and rotation
        "ipsec_keys_in_use":
            "Distinct key IDs with SAs installed for at least one peer (1 when no rotation is under way).",
        "ipsec_local_key_id": "Key ID this node encrypts with (BPF encrypt_state); 0 when not ready.",
        "ipsec_advertised_key_id":
            "Key ID this node advertises to peers (it can receive it); 0 before the first advertisement.",
        "ipsec_peers_by_advertised_key": "Peers by the key ID they advertise (label key_id, never peer names).",
        "ipsec_owned_states":
            "XFRM states owned by the agent, by direction, from the agent's own state (no kernel dump).",
        "ipsec_owned_policies":
            "XFRM policies owned by the agent, by direction, from the agent's own state (no kernel dump).",
        "ipsec_rotation_phase": "Current rotation phase: 0 idle, 1 xfrm, 2 advertise, 3 bpf, 4 reclaim.",
        "ipsec_rotation_phase_duration_seconds": "Duration of each rotation phase.",
        "ipsec_rotation_duration_seconds": "Duration of whole rotations, key load to last reclaim.",
        "ipsec_rotations_started_total": "Rotations started (a new valid key was loaded).",
        "ipsec_rotations_total": "Rotations finished, by result.",
        "ipsec_seconds_since_last_rotation": "Seconds since the last completed rotation; absent before the first.",
        "ipsec_fallback_reclaims_total":
            "Old inbound SAs reclaimed by the fallback (peer never acknowledged, counters still).",
        "ipsec_xfrm_request_errors_total": "XFRM requests the kernel refused while programming a rotation or peer.",
        // Reconcile
        "ipsec_reconcile_duration_seconds": "Duration of reconcile passes.",
        "ipsec_reconcile_repairs_total": "Objects repaired by reconcile, by object (state, policy, bpf) and action.",
        "ipsec_reconcile_errors_total": "Reconcile repairs or dumps that failed.",
        // Registry
        "ipsec_registry_connected": "1 when the registry session is up, 0 while unreachable (datapath kept as is).",
        "ipsec_registry_reconnects_total": "Registry reconnect attempts after the first connection.",
        "ipsec_registry_watch_events_total": "Registry watch events received.",
        "ipsec_key_fingerprint_mismatches_total": "Peers seen advertising our key ID with another key fingerprint.",
        // Key file
        "ipsec_key_load_errors_total":
            "Key files rejected, by reason (invalid, same_spi, rotation_rule, key_id_order).",
        "ipsec_peer_records_rejected_total":
            "Peer records refused for claiming what is not theirs, by reason (prefix_too_short, pod_cidr_overlap, underlay_taken).",
        "ipsec_key_file_insecure_permissions": "1 when the key file is readable by group or others.",
        // Process
        "ipsec_build_info": "Build information; the value is always 1.",
        "ipsec_ready":
            "1 once the first full XFRM programming and advertisement are done and XFRM programming succeeds.",
    ]
}
