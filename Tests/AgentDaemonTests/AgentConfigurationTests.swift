import AgentDaemon
import Foundation
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

    static let badValues: [(String, String)] = [
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
    ]

    static let badNamesAndAddresses: [(String, String)] = [
        (valid + "\nreconcileInterval: 20s\n", "config:12: setting \"reconcileInterval\" is given twice, at lines 9 and 12"),
        (valid.replacingOccurrences(of: "  credentialFile: /etc/ipsec-agent/credential", with: "  credentialFile: /a\n  credentialFile: /b"),
         "config:8: setting \"registry.credentialFile\" is given twice, at lines 7 and 8"),
        (valid.replacingOccurrences(of: "http://127.0.0.1:7470", with: "http://127.0.0.1:74700"), "config:6: registry.embedded: expected HOST or HOST:PORT"),
        (valid.replacingOccurrences(of: "http://127.0.0.1:7470", with: "http://registry_1:7470"), "config:6: registry.embedded: \"registry_1\" is neither"),
        (valid.replacingOccurrences(of: "http://127.0.0.1:7470", with: "http://127.0.0.1:7470/v1/nodes"), "config:6: registry.embedded: expected only scheme, host and port"),
        (valid.replacingOccurrences(of: "http://127.0.0.1:7470", with: "http://admin:hunter2@127.0.0.1:7470"), "config:6: registry.embedded: a URL must not carry a user name"),
        (valid.replacingOccurrences(of: "embedded: http://127.0.0.1:7470", with: "etcd: [http://10.0.0.1:2379, \"10.0.0.2:2379\"]"), "config:6: registry.etcd: expected an http"),
        (valid + "\nadminListen: 9479\n", "config:12: adminListen: expected HOST:PORT"),
        (valid + "\nadminListen: \"::1:9479\"\n", "config:12: adminListen: expected HOST:PORT"),
    ]

    @Test(arguments: badValues + badNamesAndAddresses)
    func rejectsBadInputNamingTheLine(text: String, expected: String) {
        do {
            _ = try AgentConfiguration.parse(text)
            Issue.record("accepted invalid configuration")
        } catch {
            #expect("\(error)".contains(expected), "got: \(error)")
        }
    }

    @Test func secretsInAURLAreNotEchoed() {
        let text = Self.valid.replacingOccurrences(of: "http://127.0.0.1:7470", with: "http://admin:hunter2@127.0.0.1:7470")
        #expect(throws: AgentConfiguration.Error.self) { try AgentConfiguration.parse(text) }
        do { _ = try AgentConfiguration.parse(text) } catch { #expect(!"\(error)".contains("hunter2"), "\(error)") }
    }

    @Test func nonLoopbackAdminAddressIsWarnedAbout() throws {
        #expect(try AgentConfiguration.parse(Self.valid).warnings.isEmpty)
        #expect(try AgentConfiguration.parse(Self.valid + "\nadminListen: \"[::1]:9479\"\n").warnings.isEmpty)
        #expect(try AgentConfiguration.parse(Self.valid + "\nadminListen: localhost:9479\n").warnings.isEmpty)
        for open in ["0.0.0.0:9479", "192.0.2.1:9479", "\"[::]:9479\""] {
            let warnings = try AgentConfiguration.parse(Self.valid + "\nadminListen: \(open)\n").warnings
            #expect(warnings.count == 1 && warnings[0].contains("is not a loopback address"), "\(open): \(warnings)")
        }
    }

    @Test func endpointURLsThatWork() throws {
        for url in ["http://127.0.0.1:7470", "https://registry.example:7470/", "http://[fd00::1]:2379", "https://etcd-0"] {
            #expect(throws: Never.self) { try EndpointURL(url) }
        }
        #expect(try EndpointURL("http://[::1]:2379").isLoopback)
        #expect(try !EndpointURL("https://10.0.0.1:2379").isLoopback)
    }
}
