import Foundation

/// Conditions for tests that need root, network namespaces, or the real-kernel VM.
public enum Privileges {
    /// Root and a working `ip netns`: host privileged tests run.
    public static var canCreateNamespaces: Bool {
        guard getuid() == 0 else { return false }
        return ["/usr/sbin/ip", "/sbin/ip", "/usr/bin/ip", "/bin/ip"].contains { FileManager.default.isExecutableFile(atPath: $0) }
    }

    /// True inside the VM rig (`scripts/vm-run` sets IPSEC_AGENT_VM=1 after loading esp4/esp6).
    public static var inRealKernelVM: Bool {
        ProcessInfo.processInfo.environment["IPSEC_AGENT_VM"] == "1"
    }
}
