#if canImport(Glibc)
    import Glibc
#endif

/// What went wrong in the BPF datapath, with enough context to act on: the operation, the map or
/// interface, the errno, and for a rejected program an excerpt of the kernel verifier's log.
/// Never carries key material (the maps hold only key IDs and node IDs).
public enum DatapathError: Error, Equatable, CustomStringConvertible {
    /// The datapath needs root (CAP_BPF and CAP_NET_ADMIN).
    case notRoot(operation: String)
    /// The pin directory is not on a bpf filesystem.
    case bpffsNotMounted(path: String)
    /// The pin directory could not be created or inspected.
    case pinDirectory(path: String, errno: Int32)
    /// libbpf could not parse the embedded object.
    case objectOpen(errno: Int32, details: String)
    /// Creating/reusing the maps or loading the program failed; `verifierLog` is the tail of the kernel's log.
    case load(errno: Int32, details: String, verifierLog: String)
    /// The object lacks a program or map the datapath expects (a build mismatch).
    case missingObjectPart(kind: String, name: String)
    case interfaceNotFound(String)
    case attach(interface: String, errno: Int32, details: String)
    case detach(interface: String, errno: Int32, details: String)
    case mapOperation(map: String, operation: String, key: String, errno: Int32)
    /// A map entry the program or agent could not have written (a foreign writer or a layout change).
    case corruptEntry(map: String, detail: String)
    case testRun(errno: Int32)

    public var description: String {
        switch self {
        case .notRoot(let operation):
            return "BPF datapath: \(operation) needs root (CAP_BPF and CAP_NET_ADMIN)"
        case .bpffsNotMounted(let path):
            return "BPF datapath: \(path) is not on a bpf filesystem; mount one with `mount -t bpf bpf /sys/fs/bpf`"
        case .pinDirectory(let path, let errno):
            return "BPF datapath: pin directory \(path): \(DatapathError.text(errno))"
        case .objectOpen(let errno, let details):
            return
                "BPF datapath: cannot open the embedded BPF object: \(DatapathError.text(errno))\(DatapathError.suffix(details))"
        case .load(let errno, let details, let verifierLog):
            var text =
                "BPF datapath: loading the BPF object failed: \(DatapathError.text(errno))\(DatapathError.suffix(details))"
            if !verifierLog.isEmpty { text += "\nverifier log (tail):\n\(verifierLog)" }
            return text
        case .missingObjectPart(let kind, let name):
            return "BPF datapath: the BPF object has no \(kind) named \(name)"
        case .interfaceNotFound(let name):
            return "BPF datapath: interface \(name) not found"
        case .attach(let interface, let errno, let details):
            return
                "BPF datapath: attaching to tc ingress of \(interface) failed: \(DatapathError.text(errno))\(DatapathError.suffix(details))"
        case .detach(let interface, let errno, let details):
            return
                "BPF datapath: detaching from tc ingress of \(interface) failed: \(DatapathError.text(errno))\(DatapathError.suffix(details))"
        case .mapOperation(let map, let operation, let key, let errno):
            return "BPF datapath: \(operation) \(key) in map \(map) failed: \(DatapathError.text(errno))"
        case .corruptEntry(let map, let detail):
            return "BPF datapath: map \(map) holds an invalid entry: \(detail)"
        case .testRun(let errno):
            return "BPF datapath: BPF_PROG_TEST_RUN failed: \(DatapathError.text(errno))"
        }
    }

    static func text(_ errno: Int32) -> String {
        "\(String(cString: strerror(errno))) (errno \(errno))"
    }

    private static func suffix(_ details: String) -> String {
        details.isEmpty ? "" : " — \(details)"
    }
}
