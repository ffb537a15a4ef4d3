import Agent
import AgentDaemon
import ArgumentParser
import Datapath
import XFRM

/// `ipsec-agent cleanup --config FILE`: removes exactly the agent's own objects (SAs and policies it owns, its
/// BPF program and pinned maps). Foreign objects are never touched. Run it with the agent stopped.
struct CleanupCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "cleanup", abstract: "Remove the agent's own XFRM objects, BPF program and pinned maps.")

    @Option(help: "The agent's configuration file.")
    var config: String

    func run() throws {
        let configuration = try AgentConfiguration.load(path: config)
        let namespace = configuration.networkNamespace.map { $0.hasPrefix("/") ? $0 : "/var/run/netns/\($0)" }
        let client = try XFRMClient(networkNamespacePath: namespace)
        let policies = try client.policies().filter(DatapathLayout.owns)
        let states = try client.states().filter(DatapathLayout.owns)
        let requests = policies.map { XFRMRequest.deletePolicy($0.id) } + states.map { XFRMRequest.deleteState($0.id) }
        let failures = client.perform(requests).enumerated().compactMap { i, r -> String? in
            if case .failure(let e) = r, !(e.errno == 2) { return "\(requests[i]): \(e)" }
            return nil
        }
        for interface in configuration.interfaces {
            do {
                let datapath = try BPFDatapath(pinDirectory: configuration.bpfPinDirectory)
                try datapath.detach(interface: interface)
            } catch {
                print("note: \(interface): \(error)")
            }
        }
        try BPFDatapath.removePins(pinDirectory: configuration.bpfPinDirectory)
        print(
            "removed \(policies.count) policies, \(states.count) states, the BPF program and pins under \(configuration.bpfPinDirectory)"
        )
        if !failures.isEmpty {
            throw ValidationError("some objects could not be removed:\n" + failures.joined(separator: "\n"))
        }
    }
}
