import Foundation

/// A throw-away network namespace for a privileged test: created on init, deleted by `destroy()`.
public final class NetworkNamespace: Sendable {
    public let name: String

    /// Path usable with setns(2): `/var/run/netns/NAME`.
    public var path: String { "/var/run/netns/\(name)" }

    public init(prefix: String = "ipsa-test") throws {
        name = "\(prefix)-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        try Shell.run("ip", "netns", "add", name)
        try Shell.run("ip", "-n", name, "link", "set", "lo", "up")
    }

    /// Runs a command inside the namespace (`ip netns exec NAME …`).
    @discardableResult
    public func run(_ args: String...) throws -> String {
        try Shell.run(["ip", "netns", "exec", name] + args)
    }

    public func destroy() {
        _ = try? Shell.status(["ip", "netns", "del", name])
    }

    /// Creates a namespace, runs `body`, and always deletes it.
    public static func with<R>(prefix: String = "ipsa-test", _ body: (NetworkNamespace) async throws -> R) async throws -> R {
        let ns = try NetworkNamespace(prefix: prefix)
        defer { ns.destroy() }
        return try await body(ns)
    }
}
