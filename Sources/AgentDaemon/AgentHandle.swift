import Agent
import Datapath
import Registry
import Synchronization

/// What the admin endpoint reads from the running daemon. Filled in as start-up progresses.
public final class AgentHandle: Sendable {
    struct Parts {
        var controller: AgentController?
        var registryClient: RegistryClient?
        var kernel: (any XFRMKernel)?
        var encryptMap: (any EncryptMap)?
        var insecureKeyFile: @Sendable () -> Bool = { false }
    }
    private let parts = Mutex(Parts())

    public init() {}

    /// Publishes the running controller (the daemon does this once start-up is done; benchmarks and tests too).
    public func setController(_ controller: AgentController) { parts.withLock { $0.controller = controller } }

    var controller: AgentController? { parts.withLock { $0.controller } }
    var registryClient: RegistryClient? { parts.withLock { $0.registryClient } }
    var kernel: (any XFRMKernel)? { parts.withLock { $0.kernel } }
    var encryptMap: (any EncryptMap)? { parts.withLock { $0.encryptMap } }
    var insecureKeyFile: Bool { parts.withLock { $0.insecureKeyFile }() }

    func update(_ body: (inout Parts) -> Void) { parts.withLock { body(&$0) } }
}
