import ArgumentParser
import Foundation
import IPsecPrimitives
import XFRM

/// `ipsec-agent-bench xfrm`: installs the same SAs and policies with `XFRMClient` (one batch) and with
/// `ip -batch`, in a throw-away network namespace, and prints both times and their ratio.
struct XFRMBenchmark: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "xfrm",
        abstract: "XFRMClient batch vs ip -batch: install N policies (and N SAs, where the kernel has ESP).")

    @Option(help: "OUT policies to install (host selectors, mark, pinned template).")
    var policies = 10_000

    @Option(help: "ESP SAs to install (needs a kernel with ESP: the VM rig).")
    var states = 0

    @Option(help: "Use this existing network namespace (its XFRM database must be empty) instead of a fresh one.")
    var netns: String?

    func validate() throws {
        guard (0...65_000).contains(policies), (0...65_000).contains(states), policies + states > 0 else {
            throw ValidationError("--policies and --states must be 0…65000 and not both 0")
        }
    }

    func run() throws {
        // Each tool gets a fresh namespace of its own, so neither inherits hash tables the other grew.
        let swiftNamespace = netns ?? "ipsa-bench-\(getpid())-swift"
        let ipNamespace = netns ?? "ipsa-bench-\(getpid())-ip"
        if netns == nil {
            try Self.ip(["netns", "add", swiftNamespace])
            try Self.ip(["netns", "add", ipNamespace])
        }
        defer {
            if netns == nil {
                try? Self.ip(["netns", "del", swiftNamespace])
                try? Self.ip(["netns", "del", ipNamespace])
            }
        }
        let swiftClient = try XFRMClient(networkNamespacePath: "/var/run/netns/\(swiftNamespace)")
        let ipClient = try XFRMClient(networkNamespacePath: "/var/run/netns/\(ipNamespace)")
        for client in [swiftClient, ipClient] {
            guard try client.states().isEmpty, try client.policies().isEmpty else {
                throw ValidationError("namespace \(netns ?? "?") already has XFRM objects; use an empty one")
            }
        }
        let stateObjects = (0..<states).map(Self.state)
        let policyObjects = (0..<policies).map(Self.policy)
        print(
            "xfrm: \(states) SAs + \(policies) policies, fresh netns per tool, batches of \(XFRMClient.batchBytes / 1024) KiB"
        )

        // Warm-up, untimed: the first SA of a transform makes the kernel load its crypto modules (gcm, ghash,
        // aes …), which took seconds in the VM and would be charged to whichever tool ran first.
        if let first = stateObjects.first {
            var warmUp = first
            warmUp.spi = 0xFFFF_FF00
            try ipClient.add(warmUp)
            try ipClient.delete(warmUp.id)
        }

        // Swift: SAs then policies, one perform each.
        let swiftStates = try Self.install(stateObjects.map(XFRMRequest.addState), with: swiftClient)
        let swiftPolicies = try Self.install(policyObjects.map(XFRMRequest.addPolicy), with: swiftClient)
        try verifyCounts(swiftClient)
        let clock = ContinuousClock()
        let dumpTime = clock.measure { _ = try? swiftClient.policies() }
        let dumpStatesTime = clock.measure { _ = try? swiftClient.states() }
        var deleteResults: [Result<Void, XFRMError>] = []
        let deleteTime = clock.measure {
            deleteResults = swiftClient.perform(
                stateObjects.map { .deleteState($0.id) } + policyObjects.map { .deletePolicy($0.id) })
        }
        guard deleteResults.allSatisfy({ (try? $0.get()) != nil }), try swiftClient.policies().isEmpty,
            try swiftClient.states().isEmpty
        else {
            throw ValidationError("XFRMClient could not delete what it installed")
        }

        // iproute2: the same objects, one `ip -batch` per kind.
        let ipStates = try Self.installWithIP(stateObjects.map(Self.ipLine), namespace: ipNamespace)
        let ipPolicies = try Self.installWithIP(policyObjects.map(Self.ipLine), namespace: ipNamespace)
        try verifyCounts(ipClient)
        _ = ipClient.perform(stateObjects.map { .deleteState($0.id) } + policyObjects.map { .deletePolicy($0.id) })

        func line(_ what: String, _ count: Int, _ swift: Double, _ ip: Double) {
            guard count > 0 else { return }
            print(
                String(
                    format: "xfrm: %-8@ %6d  XFRMClient %8.3f s  ip -batch %8.3f s  ratio %.3f", what, count, swift, ip,
                    swift / ip))
        }
        line("SAs", states, swiftStates, ipStates)
        line("policies", policies, swiftPolicies, ipPolicies)
        let swiftTotal = swiftStates + swiftPolicies, ipTotal = ipStates + ipPolicies
        print(
            String(
                format: "xfrm: total XFRMClient %.3f s (%.0f objects/s), ip -batch %.3f s (%.0f objects/s)",
                swiftTotal, Double(states + policies) / swiftTotal, ipTotal, Double(states + policies) / ipTotal))
        print(String(format: "xfrm: ratio XFRMClient / ip -batch = %.3f (target <= 0.5)", swiftTotal / ipTotal))
        print(
            String(
                format: "xfrm: XFRMClient dump of %d policies %.3f s, of %d SAs %.3f s, delete all %.3f s",
                policies, Self.seconds(dumpTime), states, Self.seconds(dumpStatesTime), Self.seconds(deleteTime)))
    }

    /// Installs `requests` in one `perform`; returns seconds. Throws if any failed.
    private static func install(_ requests: [XFRMRequest], with client: XFRMClient) throws -> Double {
        guard !requests.isEmpty else { return 0 }
        var results: [Result<Void, XFRMError>] = []
        let time = ContinuousClock().measure { results = client.perform(requests) }
        let failures = results.compactMap { if case .failure(let e) = $0 { e } else { nil } }
        guard failures.isEmpty else {
            throw ValidationError("XFRMClient: \(failures.count) failed, first: \(failures[0])")
        }
        return seconds(time)
    }

    /// Runs `ip -n NAMESPACE -batch FILE` over `lines`; returns seconds.
    private static func installWithIP(_ lines: [String], namespace: String) throws -> Double {
        guard !lines.isEmpty else { return 0 }
        let file = FileManager.default.temporaryDirectory.appendingPathComponent("xfrm-bench-\(getpid()).batch")
        try (lines.joined(separator: "\n") + "\n").write(to: file, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(at: file) }
        return seconds(try ContinuousClock().measure { try ip(["-n", namespace, "-batch", file.path]) })
    }

    private func verifyCounts(_ client: XFRMClient) throws {
        let (s, p) = (try client.states().count, try client.policies().count)
        guard s == states, p == policies else {
            throw ValidationError("expected \(states) SAs and \(policies) policies, the kernel has \(s) and \(p)")
        }
    }

    static func state(_ index: Int) -> XFRMState {
        let key = SecretBytes((0..<20).map { UInt8(truncatingIfNeeded: index &* 31 &+ $0) })
        return XFRMState(
            source: .v4(0xC0A8_0001), destination: .v4(0x0A64_0000 | UInt32(index)), spi: UInt32(0x100 + index),
            mode: .tunnel, reqid: 1, mark: XFRMMark(value: 0xD00, mask: 0xF00),
            outputMark: XFRMMark(value: 0xE00, mask: 0xF00),
            algorithm: .aead(name: "rfc4106(gcm(aes))", key: key, icvBits: 128), replayWindow: 1024, esn: true)
    }

    static func policy(_ index: Int) -> XFRMPolicy {
        let a = UInt32(index >> 8 & 0xFF), b = UInt32(index & 0xFF), c = UInt32(index >> 16 & 0xFF)
        let spi = UInt32(index % 15 + 1)
        return XFRMPolicy(
            selector: XFRMSelector(
                source: IPPrefix(host: .v4(0x0A00_0000 | c << 16 | a << 8 | b)),
                destination: IPPrefix(host: .v4(0x0AC8_0000 | c << 16 | a << 8 | b))),
            direction: .out, priority: 100, mark: XFRMMark(value: 0xE00 | spi << 12, mask: 0xFFFF_FF00),
            templates: [XFRMTemplate(source: .v4(0xC0A8_0001), destination: .v4(0xC0A8_0002), spi: spi, reqid: 1)])
    }

    static func ipLine(_ state: XFRMState) -> String {
        guard case .aead(let name, let key, let icv) = state.algorithm, let mark = state.mark,
            let output = state.outputMark
        else {
            fatalError("benchmark states are AEAD with marks")
        }
        let hex = key.revealed.map { String(format: "%02x", $0) }.joined()
        return
            "xfrm state add src \(state.source) dst \(state.destination) proto esp spi 0x\(String(state.spi, radix: 16))"
            + " reqid \(state.reqid) mode tunnel replay-window \(state.replayWindow) flag esn"
            + " mark 0x\(String(mark.value, radix: 16)) mask 0x\(String(mark.mask, radix: 16))"
            + " output-mark 0x\(String(output.value, radix: 16)) mask 0x\(String(output.mask, radix: 16))"
            + " aead \(name) 0x\(hex) \(icv)"
    }

    static func ipLine(_ policy: XFRMPolicy) -> String {
        let t = policy.templates[0], mark = policy.mark!
        return
            "xfrm policy add src \(policy.selector.source) dst \(policy.selector.destination) dir out priority \(policy.priority)"
            + " mark 0x\(String(mark.value, radix: 16)) mask 0x\(String(mark.mask, radix: 16))"
            + " tmpl src \(t.source!) dst \(t.destination!) proto esp spi 0x\(String(t.spi, radix: 16)) reqid \(t.reqid) mode tunnel"
    }

    static func ip(_ arguments: [String]) throws {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["ip"] + arguments
        try process.run()
        process.waitUntilExit()
        guard process.terminationStatus == 0 else {
            throw ValidationError(
                "ip \(arguments.prefix(4).joined(separator: " ")) … exited \(process.terminationStatus)")
        }
    }

    static func seconds(_ duration: Duration) -> Double {
        Double(duration.components.seconds) + Double(duration.components.attoseconds) / 1e18
    }
}
