import IPsecPrimitives
import Keys
import TestSupport
import Testing

/// The pod MTU arithmetic (docs/operations.md, "MTU"), checked by hand and against a kernel with ESP.
struct ESPTunnelMTUTests {
    static let gcm128 = KeyAlgorithm.aesGCM(keyBits: 128, icvBits: 128)

    /// Each figure worked out by hand from the kernel's formula: (MTU − outer − 8 − IV − ICV) & ~(block − 1) − 2.
    @Test(arguments: [
        (gcm128, IPAddress.Family.v4, 1500, 1446),  // 1500 − 20 − 8 − 8 − 16 = 1448, − 2
        (gcm128, .v6, 1500, 1426),  // 1500 − 40 − 8 − 8 − 16 = 1428, − 2
        (.aesGCM(keyBits: 256, icvBits: 64), .v4, 1500, 1454),  // 1456 − 2
        (.aesGCM(keyBits: 128, icvBits: 96), .v4, 1500, 1450),  // 1452 − 2
        (.cbcHMAC(hash: "sha256", authKeyBytes: 32, aesKeyBits: 128), .v4, 1500, 1438),  // 1440 (a multiple of 16), − 2
        (.cbcHMAC(hash: "sha256", authKeyBytes: 32, aesKeyBits: 128), .v6, 1500, 1406),  // 1420 → 1408, − 2
        (.cbcHMAC(hash: "sha1", authKeyBytes: 20, aesKeyBits: 128), .v4, 1500, 1438),  // 1444 → 1440, − 2
        (.cbcHMAC(hash: "sha512", authKeyBytes: 64, aesKeyBits: 256), .v4, 1500, 1422),  // 1424, − 2
        (gcm128, .v4, 9000, 8946),  // 8948 − 2
        (gcm128, .v4, 50, 0),  // too small to carry anything
    ])
    func podMTU(_ algorithm: KeyAlgorithm, _ family: IPAddress.Family, _ underlay: Int, _ expected: Int) {
        #expect(ESPTunnelMTU(underlayMTU: underlay, outerFamily: family, algorithm: algorithm).podMTU == expected)
    }

    @Test func theArithmeticIsPrinted() {
        let text = ESPTunnelMTU(underlayMTU: 1500, outerFamily: .v4, algorithm: Self.gcm128).description
        #expect(text == "pod MTU 1446 = ((1500 underlay − 20 IPv4 − 8 ESP − 8 IV − 16 ICV) aligned to 4) − 2")
    }
}

/// The same figures against the kernel (the VM rig): two namespaces, ESP tunnel SAs made with `ip xfrm` for each
/// algorithm and family; a ping with DF whose packet is exactly the pod MTU passes, one byte more is refused
/// with "message too long" and the kernel's MTU, which must be ours.
@Suite(.enabled(if: Privileges.inRealKernelVM), .serialized)
struct RealKernelESPTunnelMTUTests {
    struct Case: Sendable, CustomTestStringConvertible {
        var algorithm: KeyAlgorithm
        var arguments: [String]
        var testDescription: String { "\(algorithm)" }
    }
    static let cases = [
        Case(algorithm: .aesGCM(keyBits: 128, icvBits: 128),
             arguments: ["aead", "rfc4106(gcm(aes))", "0x" + String(repeating: "11", count: 20), "128"]),
        Case(algorithm: .aesGCM(keyBits: 256, icvBits: 64),
             arguments: ["aead", "rfc4106(gcm(aes))", "0x" + String(repeating: "12", count: 36), "64"]),
        Case(algorithm: .cbcHMAC(hash: "sha256", authKeyBytes: 32, aesKeyBits: 128),
             arguments: ["auth-trunc", "hmac(sha256)", "0x" + String(repeating: "21", count: 32), "128",
                         "enc", "cbc(aes)", "0x" + String(repeating: "22", count: 16)]),
        Case(algorithm: .cbcHMAC(hash: "sha1", authKeyBytes: 20, aesKeyBits: 128),
             arguments: ["auth-trunc", "hmac(sha1)", "0x" + String(repeating: "31", count: 20), "96",
                         "enc", "cbc(aes)", "0x" + String(repeating: "32", count: 16)]),
        Case(algorithm: .cbcHMAC(hash: "sha512", authKeyBytes: 64, aesKeyBits: 256),
             arguments: ["auth-trunc", "hmac(sha512)", "0x" + String(repeating: "41", count: 64), "256",
                         "enc", "cbc(aes)", "0x" + String(repeating: "42", count: 32)]),
    ]

    @Test(arguments: cases, [IPAddress.Family.v4, .v6])
    func theKernelAgreesWithThePodMTU(_ c: Case, _ family: IPAddress.Family) async throws {
        let left = try await NetworkNamespace.create(prefix: "mtu-l")
        defer { left.destroy() }
        let right = try await NetworkNamespace.create(prefix: "mtu-r")
        defer { right.destroy() }
        let suffix = String(UInt16.random(in: 0...UInt16.max), radix: 16)
        let (l, r, plen) = family == .v4 ? ("10.98.0.1", "10.98.0.2", "24") : ("fd98::1", "fd98::2", "64")
        try await Shell.run("ip", "link", "add", "ml\(suffix)", "type", "veth", "peer", "name", "mr\(suffix)")
        try await Shell.run("ip", "link", "set", "ml\(suffix)", "netns", left.name)
        try await Shell.run("ip", "link", "set", "mr\(suffix)", "netns", right.name)
        for (ns, dev, address) in [(left, "ml\(suffix)", l), (right, "mr\(suffix)", r)] {
            try await Shell.run("ip", "-n", ns.name, "addr", "add", "\(address)/\(plen)", "dev", dev, "nodad")
            try await Shell.run("ip", "-n", ns.name, "link", "set", dev, "up")
        }
        for ns in [left, right] {
            for (src, dst, spi) in [(l, r, "0x101"), (r, l, "0x202")] {
                try await Shell.run(["ip", "-n", ns.name, "xfrm", "state", "add", "src", src, "dst", dst, "proto", "esp", "spi", spi,
                               "reqid", "7", "mode", "tunnel", "replay-window", "1024", "flag", "esn"] + c.arguments)
            }
        }
        for (ns, me, peer) in [(left, l, r), (right, r, l)] {
            for (dir, src, dst) in [("out", me, peer), ("in", peer, me)] {
                try await Shell.run("ip", "-n", ns.name, "xfrm", "policy", "add", "src", src, "dst", dst, "dir", dir,
                              "tmpl", "src", src, "dst", dst, "proto", "esp", "reqid", "7", "mode", "tunnel")
            }
        }
        let mtu = ESPTunnelMTU(underlayMTU: 1500, outerFamily: family, algorithm: c.algorithm).podMTU
        let headers = family == .v4 ? 28 : 48  // inner IP header + ICMP echo header
        func ping(_ size: Int) async throws -> (Int32, String) {
            try await Shell.status(["ip", "netns", "exec", left.name, "ping", family == .v4 ? "-4" : "-6", "-c", "1", "-W", "2",
                              "-M", "do", "-s", "\(size - headers)", r])
        }
        let (fits, fitsOutput) = try await ping(mtu)
        #expect(fits == 0, "a \(mtu)-byte packet must pass: \(fitsOutput)")
        let (over, overOutput) = try await ping(mtu + 1)
        #expect(over != 0, "a \(mtu + 1)-byte packet must be refused")
        // ping prints it as "mtu=1446" (IPv4) or "mtu: 1426" (IPv6).
        #expect(overOutput.contains("mtu=\(mtu)") || overOutput.contains("mtu: \(mtu)"),
                "the kernel's MTU is not \(mtu): \(overOutput)")
    }
}
