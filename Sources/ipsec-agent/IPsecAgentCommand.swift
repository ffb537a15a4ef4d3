import ArgumentParser

@main
struct IPsecAgentCommand: AsyncParsableCommand {
    static let version = "0.1.0"

    static let configuration = CommandConfiguration(
        commandName: "ipsec-agent",
        abstract: "Keeps node-to-node IPsec encrypted through key rotation without dropping a packet.",
        version: version,
        subcommands: [
            RunCommand.self, StatusCommand.self, TraceCommand.self, CleanupCommand.self, KeyCommand.self,
            RegistryCommand.self,
        ]
    )
}
