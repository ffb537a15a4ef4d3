import Agent
import ArgumentParser
import Foundation
import IPsecPrimitives

/// `ipsec-agent trace --to IP`: which peer, which keys, which SPI and mark, which policy and SA.
struct TraceCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "trace", abstract: "Explain how a packet from a local pod to an address leaves this node.")

    @Option(help: "Destination address (a pod on a peer node).")
    var to: String

    @Option(help: "Admin endpoint HOST:PORT (default: adminListen from --config, else 127.0.0.1:9479).")
    var admin: String?

    @Option(help: "The agent's configuration file (to find its admin endpoint).")
    var config: String?

    @Flag(help: "Print JSON.")
    var json = false

    func validate() throws {
        guard IPAddress(to) != nil else { throw ValidationError("--to: not an IP address: \"\(to)\"") }
    }

    func run() async throws {
        try await AdminClient.show("/trace?to=\(to)", admin: admin, config: config, json: json, as: EgressTrace.self) {
            $0.text
        }
    }
}
