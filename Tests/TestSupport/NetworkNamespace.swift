import Foundation

/// A throw-away network namespace for a privileged test: created by `create`, deleted by `destroy()`.
public final class NetworkNamespace: Sendable {
    public let name: String

    /// Path usable with setns(2): `/var/run/netns/NAME`.
    public var path: String { "/var/run/netns/\(name)" }

    private init(name: String) { self.name = name }

    /// Creates a namespace named `PREFIX-PID-RANDOM`, its loopback up.
    public static func create(prefix: String = "ipsa-test") async throws -> NetworkNamespace {
        let namespace = NetworkNamespace(name: "\(prefix)-\(getpid())-\(UInt32.random(in: 0...UInt32.max))")
        try await Shell.run("ip", "netns", "add", namespace.name)
        do {
            try await Shell.run("ip", "-n", namespace.name, "link", "set", "lo", "up")
        } catch {
            namespace.destroy()
            throw error
        }
        return namespace
    }

    /// Runs a command inside the namespace (`ip netns exec NAME …`).
    @discardableResult
    public func run(_ args: String...) async throws -> String {
        try await Shell.run(["ip", "netns", "exec", name] + args)
    }

    /// Deletes the namespace. Blocks for the few milliseconds `ip netns del` takes, so that `defer` can call it.
    public func destroy() {
        _ = try? Shell.blockingStatus(["ip", "netns", "del", name])
    }

    /// Creates a namespace, runs `body`, and always deletes it.
    public static func with<R>(prefix: String = "ipsa-test", _ body: (NetworkNamespace) async throws -> R) async throws -> R {
        let ns = try await create(prefix: prefix)
        defer { ns.destroy() }
        return try await body(ns)
    }
}
