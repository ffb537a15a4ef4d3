import ArgumentParser

/// Benchmarks run by `scripts/bench` (figures, not pass/fail tests). One subcommand per area.
@main
struct BenchCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ipsec-agent-bench",
        abstract: "ipsec-agent benchmarks: prints figures for docs/benchmarks.md.",
        subcommands: [
            // one line per benchmark subcommand
            XFRMBenchmark.self,
            RegistryBenchmark.self,
            ScaleBenchmark.self,
        ]
    )
}
