import ArgumentParser

@main
struct IPsecAgentCommand: AsyncParsableCommand {
    static let version = "0.1.0"

    static let configuration = CommandConfiguration(
        commandName: "ipsec-agent",
        abstract: "Keeps node-to-node IPsec encrypted through key rotation without dropping a packet.",
        version: version,
        subcommands: [KeyCommand.self, RegistryCommand.self]
    )
}
