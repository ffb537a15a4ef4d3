import Testing
import TestSupport

/// Proves the VM rig is what the real-kernel tests assume: a kernel with ESP, usable namespaces and veth.
@Suite(.enabled(if: Privileges.inRealKernelVM, "runs inside the VM rig (scripts/vm-run)"))
struct RealKernelRigTests {
    @Test func kernelAcceptsESPStates() async throws {
        try await NetworkNamespace.with(prefix: "rig") { ns in
            try await ns.run("ip", "xfrm", "state", "add", "src", "192.0.2.1", "dst", "192.0.2.2", "proto", "esp",
                       "spi", "0x101", "mode", "tunnel", "aead", "rfc4106(gcm(aes))",
                       "0x0102030405060708090a0b0c0d0e0f1011121314", "128")
            let out = try await ns.run("ip", "xfrm", "state")
            #expect(out.contains("spi 0x00000101"))
            #expect(out.contains("rfc4106(gcm(aes))"))
        }
    }

    @Test func vethPairsCanJoinTwoNamespaces() async throws {
        try await NetworkNamespace.with(prefix: "rig-a") { a in
            try await NetworkNamespace.with(prefix: "rig-b") { b in
                try await Shell.run("ip", "link", "add", "rv0", "netns", a.name, "type", "veth", "peer", "name", "rv1", "netns", b.name)
                try await a.run("ip", "addr", "add", "198.51.100.1/24", "dev", "rv0")
                try await b.run("ip", "addr", "add", "198.51.100.2/24", "dev", "rv1")
                try await a.run("ip", "link", "set", "rv0", "up")
                try await b.run("ip", "link", "set", "rv1", "up")
                let out = try await a.run("ping", "-c", "2", "-i", "0.2", "-W", "5", "198.51.100.2")
                #expect(out.contains("2 received"))
            }
        }
    }
}

/// Host side: documents the fact that shapes the rig — the host kernel has no ESP.
@Suite(.enabled(if: Privileges.canCreateNamespaces && !Privileges.inRealKernelVM, "needs root on the host"))
struct HostKernelFactsTests {
    @Test func hostKernelRejectsESPOrHasIt() async throws {
        try await NetworkNamespace.with(prefix: "host-esp") { ns in
            let (status, out) = try await Shell.status(["ip", "netns", "exec", ns.name, "ip", "xfrm", "state", "add",
                "src", "192.0.2.1", "dst", "192.0.2.2", "proto", "esp", "spi", "0x101", "mode", "tunnel",
                "aead", "rfc4106(gcm(aes))", "0x0102030405060708090a0b0c0d0e0f1011121314", "128"])
            // Either the kernel lacks ESP (this machine) and says so, or it has it and the state exists.
            if status != 0 {
                // iproute2 prints the kernel's ext-ack text: "Requested type not found" or
                // "Requested AEAD algorithm not found", depending on which check fires first.
                #expect(out.contains("Requested") && out.contains("not found"))
            } else {
                #expect(try await ns.run("ip", "xfrm", "state").contains("0x00000101"))
            }
        }
    }
}
