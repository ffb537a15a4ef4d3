import Agent
import ArgumentParser
import Foundation

/// `ipsec-agent status [--json]`: key state, rotation phase, peer table, last reconcile.
struct StatusCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "status", abstract: "Show the running agent's keys, rotation phase and peers.")

    @Option(help: "Admin endpoint HOST:PORT (default: adminListen from --config, else 127.0.0.1:9479).")
    var admin: String?

    @Option(help: "The agent's configuration file (to find its admin endpoint).")
    var config: String?

    @Flag(help: "Print JSON.")
    var json = false

    func run() async throws {
        try await AdminClient.show("/status", admin: admin, config: config, json: json, as: AgentStatus.self) {
            $0.text
        }
    }
}
