/// The kernel's XFRM error counters (`/proc/net/xfrm_stat`, CONFIG_XFRM_STATISTICS), named as Cilium names them
/// so existing dashboards carry over — but exported as counters, so `rate()` works.
public struct XFRMStatistics: Sendable, Equatable {
    /// One exported series: the `direction` and `error` labels of a kernel counter.
    public struct Key: Hashable, Sendable, Comparable {
        public var direction: String
        public var error: String
        public init(direction: String, error: String) {
            self.direction = direction
            self.error = error
        }
        public static func < (a: Key, b: Key) -> Bool { (a.direction, a.error) < (b.direction, b.error) }
    }

    public var values: [Key: UInt64]

    /// Parses the file's `Name <value>` lines. Unknown lines are ignored; a line that is not `Name number`
    /// makes the whole text invalid (nil), so a corrupt read never turns into false counter resets.
    public static func parse(_ text: String) -> XFRMStatistics? {
        var values: [Key: UInt64] = [:]
        for line in text.split(separator: "\n") {
            let fields = line.split(whereSeparator: { $0 == " " || $0 == "\t" })
            guard fields.count == 2, let value = UInt64(fields[1]) else { return nil }
            if let key = label(for: String(fields[0])) { values[key] = value }
        }
        return values.isEmpty ? nil : XFRMStatistics(values: values)
    }

    /// Cilium's label for a kernel counter name; nil for names that are not XFRM counters.
    public static func label(for name: String) -> Key? {
        let table: [String: (String, String)] = [
            "XfrmInError": ("inbound", "other"), "XfrmInBufferError": ("inbound", "no_buffer"),
            "XfrmInHdrError": ("inbound", "header"), "XfrmInNoStates": ("inbound", "no_state"),
            "XfrmInStateProtoError": ("inbound", "state_protocol"), "XfrmInStateModeError": ("inbound", "state_mode"),
            "XfrmInStateSeqError": ("inbound", "state_sequence"), "XfrmInStateExpired": ("inbound", "state_expired"),
            "XfrmInStateMismatch": ("inbound", "state_mismatched"), "XfrmInStateInvalid": ("inbound", "state_invalid"),
            "XfrmInTmplMismatch": ("inbound", "template_mismatched"), "XfrmInNoPols": ("inbound", "no_policy"),
            "XfrmInPolBlock": ("inbound", "policy_blocked"), "XfrmInPolError": ("inbound", "policy"),
            "XfrmAcquireError": ("inbound", "acquire"), "XfrmFwdHdrError": ("inbound", "forward_header"),
            "XfrmOutError": ("outbound", "other"), "XfrmOutBundleGenError": ("outbound", "bundle_generation"),
            "XfrmOutBundleCheckError": ("outbound", "bundle_check"), "XfrmOutNoStates": ("outbound", "no_state"),
            "XfrmOutStateProtoError": ("outbound", "state_protocol"),
            "XfrmOutStateModeError": ("outbound", "state_mode"),
            "XfrmOutStateSeqError": ("outbound", "state_sequence"),
            "XfrmOutStateExpired": ("outbound", "state_expired"),
            "XfrmOutPolBlock": ("outbound", "policy_blocked"), "XfrmOutPolDead": ("outbound", "policy_dead"),
            "XfrmOutPolError": ("outbound", "policy"), "XfrmOutStateInvalid": ("outbound", "state_invalid"),
        ]
        if let (d, e) = table[name] { return Key(direction: d, error: e) }
        // Counters newer kernels add (XfrmInStateDirError, …): snake_case of the rest of the name.
        for (prefix, direction) in [("XfrmIn", "inbound"), ("XfrmOut", "outbound")] where name.hasPrefix(prefix) {
            return Key(direction: direction, error: snakeCase(String(name.dropFirst(prefix.count))))
        }
        return nil
    }

    static func snakeCase(_ s: String) -> String {
        var out = ""
        for c in s {
            if c.isUppercase, !out.isEmpty { out += "_" }
            out += c.lowercased()
        }
        return out
    }

    /// Increments since `previous`; a value below the previous one (a reset, e.g. the namespace was recreated)
    /// counts as the whole new value.
    public func increments(since previous: XFRMStatistics?) -> [Key: UInt64] {
        var out: [Key: UInt64] = [:]
        for (key, value) in values {
            let before = previous?.values[key] ?? 0
            let delta = value >= before ? value - before : value
            if delta > 0 || previous == nil { out[key] = delta }
        }
        return out
    }
}
