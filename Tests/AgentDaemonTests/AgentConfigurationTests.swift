import AgentDaemon
import IPsecPrimitives
import Testing

@Suite struct AgentConfigurationTests {
    static let valid = """
    node: node-1
    underlay: 192.0.2.1
    podCIDRs: [10.244.1.0/24, "fd00:10:244:1::/64"]
    keyFile: /etc/ipsec/keys
    registry:
      embedded: http://127.0.0.1:7470
      credentialFile: /etc/ipsec-agent/credential
    interfaces: [veth-pod]
    reconcileInterval: 10s
    rotationFallbackTimeout: 5m
    peerRemovalGrace: 500ms
    """

    @Test func parsesACompleteFile() throws {
        let c = try AgentConfiguration.parse(Self.valid)
        #expect(c.nodeName == "node-1")
        #expect(c.underlay == IPAddress("192.0.2.1"))
        #expect(c.podCIDRs.map(\.description) == ["10.244.1.0/24", "fd00:10:244:1::/64"])
        #expect(c.registry == .embedded(url: "http://127.0.0.1:7470"))
        #expect(c.credentialFile == "/etc/ipsec-agent/credential")
        #expect(c.reconcileInterval == .seconds(10))
        #expect(c.rotationFallbackTimeout == .seconds(300))
        #expect(c.peerRemovalGrace == .milliseconds(500))
        #expect(c.rotationJitter == .zero)
        #expect(c.adminListen == "127.0.0.1:9479")
        #expect(c.xfrmPolicyHashing)
        #expect(try !AgentConfiguration.parse(Self.valid + "\nxfrmPolicyHashing: false\n").xfrmPolicyHashing)
    }

    @Test func documentedExampleParses() throws {
        // docs/configuration.md carries the complete commented example; keep it valid.
        let doc = try String(contentsOfFile: #filePath.replacingOccurrences(of: "Tests/AgentDaemonTests/AgentConfigurationTests.swift", with: "docs/configuration.md"), encoding: .utf8)
        let yaml = doc.components(separatedBy: "```yaml\n")[1].components(separatedBy: "```")[0]
        let parsed = try AgentConfiguration.parse(yaml)
        #expect(parsed.nodeName == "node-1")
    }

    @Test(arguments: [
        ("nodee: x\n", "config:1: unknown setting \"nodee\""),
        (valid.replacingOccurrences(of: "reconcileInterval: 10s", with: "reconcileInterval: soon"), "config:9: reconcileInterval: expected a duration"),
        (valid.replacingOccurrences(of: "underlay: 192.0.2.1", with: "underlay: 192.0.2.300"), "config:2: underlay: not an IP address"),
        (valid.replacingOccurrences(of: "10.244.1.0/24,", with: "10.244.1.0/33,"), "config:3: podCIDRs: not a CIDR"),
        (valid.replacingOccurrences(of: "  credentialFile", with: "  credentialFiles"), "config:7: unknown setting \"registry.credentialFiles\""),
        (valid.replacingOccurrences(of: "node: node-1", with: "node: Node_1"), "config:1: node: node name must be"),
        (valid.replacingOccurrences(of: "keyFile: /etc/ipsec/keys\n", with: ""), "missing required setting \"keyFile\""),
        (valid.replacingOccurrences(of: "embedded: http://127.0.0.1:7470", with: "embedded: 127.0.0.1:7470"), "config:6: registry.embedded: expected an http"),
        ("node: [unclosed\n", "not valid YAML"),
        (valid.replacingOccurrences(of: "reconcileInterval: 10s", with: "reconcileInterval: 1ms"), "must be at least"),
        (valid + "\nxfrmPolicyHashing: maybe\n", "config:12: xfrmPolicyHashing: expected true or false"),
    ])
    func rejectsBadInputNamingTheLine(text: String, expected: String) {
        do {
            _ = try AgentConfiguration.parse(text)
            Issue.record("accepted invalid configuration")
        } catch {
            #expect("\(error)".contains(expected), "got: \(error)")
        }
    }
}
