import Foundation
import IPsecPrimitives
import TestSupport
import Testing
@testable import XFRM

/// SAs against a kernel with ESP (the VM rig: `scripts/vm-run … --filter RealKernel`).
@Suite(.enabled(if: Privileges.inRealKernelVM), .serialized)
struct RealKernelXFRMTests {
    /// The state as it was built: dumps add lifetime counters and the ESN output sequence.
    private func withoutCounters(_ state: XFRMState) -> XFRMState {
        var copy = state
        copy.counters = nil
        copy.outboundSequence = nil
        return copy
    }

    @Test func esnOutputSequenceIsSetOnAddAndReadBack() async throws {
        try await NetworkNamespace.with(prefix: "xfrm-vm-seq") { namespace in
            let client = try XFRMClient(networkNamespacePath: namespace.path)
            var resumed = XFRMFixtures.aeadState()
            resumed.outboundSequence = (1 << 32) + 12_345  // crosses into the high 32 bits (oseq_hi)
            let fresh = XFRMFixtures.cbcState(source: "10.1.0.1", destination: "10.1.0.2", spi: 0x77)
            #expect(client.perform([.addState(resumed), .addState(fresh)]).allSatisfy { (try? $0.get()) != nil })
            #expect(try client.state(resumed.id)?.outboundSequence == (1 << 32) + 12_345)
            #expect(try client.state(fresh.id)?.outboundSequence == 0)
            // iproute2 reads the same replay state: oseq and oseq_hi.
            let text = try await Shell.run("ip", "-n", namespace.name, "-s", "xfrm", "state", "show")
            #expect(text.contains("oseq 0x3039") || text.contains("oseq 0x00003039"), "\(text)")
        }
    }

    @Test func aeadAndCbcHmacESNStatesRoundTripAndIproute2ReadsThem() async throws {
        try await NetworkNamespace.with(prefix: "xfrm-vm") { namespace in
            let client = try XFRMClient(networkNamespacePath: namespace.path)
            let aead = XFRMFixtures.aeadState()
            let cbc = XFRMFixtures.cbcState(source: "10.1.0.1", destination: "10.1.0.2", spi: 0x77)
            let v6 = XFRMFixtures.aeadState(source: "fd00::1", destination: "fd00::2", spi: 0x99, mark: nil)
            let results = client.perform([.addState(aead), .addState(cbc), .addState(v6), .addState(aead)])
            #expect(results.prefix(3).allSatisfy { (try? $0.get()) != nil }, "\(results)")
            if case .failure(.alreadyExists) = results[3] {} else { Issue.record("duplicate SA: \(results[3])") }

            let dumped = try client.states()
            #expect(Set(dumped.map(withoutCounters)) == [aead, cbc, v6])
            #expect(dumped.allSatisfy { $0.counters?.addTime ?? 0 > 0 }, "lifetime counters come with dumps")
            let fetched = try #require(try client.state(cbc.id))
            #expect(withoutCounters(fetched) == cbc)
            #expect(fetched.algorithm == cbc.algorithm, "keys read back byte for byte")

            let text = try await Shell.run("ip", "-n", namespace.name, "xfrm", "state", "show")
            #expect(text.contains("src 192.168.10.1 dst 192.168.10.2"))
            #expect(text.contains("proto esp spi 0x00001234 reqid 1 mode tunnel"))
            #expect(text.contains("aead rfc4106(gcm(aes)) 0xa0a1a2a3a4a5a6a7a8a9aaabacadaeafb0b1b2b3 128"))
            #expect(text.contains("auth-trunc hmac(sha256)"))
            #expect(text.contains("enc cbc(aes) 0x404142434445464748494a4b4c4d4e4f"))
            #expect(text.contains("flag af-unspec esn"), "no selector: inner packets of either family")
            #expect(text.contains("replay_window 1024, bitmap-length 32"))
            #expect(text.contains("mark 0xd00/0xf00"))
            #expect(text.contains("src fd00::1 dst fd00::2"))

            var moved = aead
            moved.outputMark = XFRMMark(value: 0xA00, mask: 0xF00)
            try client.update(moved)
            #expect(try client.state(aead.id)?.outputMark == XFRMMark(value: 0xA00, mask: 0xF00))

            try client.delete(cbc.id)
            #expect(try client.state(cbc.id) == nil)
            #expect {
                try client.delete(cbc.id)
            } throws: { error in
                if case .notFound = error as? XFRMError { return true }
                return false
            }
        }
    }

    @Test func statesInstalledByIproute2AreDumpedWithTheirFields() async throws {
        try await NetworkNamespace.with(prefix: "xfrm-vm") { namespace in
            try await Shell.run("ip", "-n", namespace.name, "xfrm", "state", "add", "src", "10.5.0.1", "dst", "10.5.0.2",
                          "proto", "esp", "spi", "0x4242", "reqid", "9", "mode", "tunnel", "replay-window", "1024", "flag", "esn",
                          "mark", "0x3e00", "mask", "0xff00", "output-mark", "0xe00", "mask", "0xf00",
                          "aead", "rfc4106(gcm(aes))", "0x000102030405060708090a0b0c0d0e0f10111213", "128")
            // An AH SA is foreign to the value types: dumps leave it out.
            try await Shell.run("ip", "-n", namespace.name, "xfrm", "state", "add", "src", "10.5.0.1", "dst", "10.5.0.3",
                          "proto", "ah", "spi", "0x4343", "mode", "tunnel",
                          "auth", "hmac(sha256)", "0x000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f")
            let client = try XFRMClient(networkNamespacePath: namespace.path)
            let states = try client.states()
            #expect(states.count == 1)
            let state = try #require(states.first)
            #expect(state.source == XFRMFixtures.address("10.5.0.1") && state.destination == XFRMFixtures.address("10.5.0.2"))
            #expect(state.spi == 0x4242 && state.reqid == 9 && state.mode == .tunnel && state.proto == .esp)
            #expect(state.esn && state.replayWindow == 1024)
            #expect(state.mark == XFRMMark(value: 0x3E00, mask: 0xFF00))
            #expect(state.outputMark == XFRMMark(value: 0xE00, mask: 0xF00))
            #expect(state.algorithm == .aead(name: "rfc4106(gcm(aes))", key: SecretBytes(0..<20), icvBits: 128))
        }
    }

    enum Transform: String, CaseIterable, Sendable { case aead, cbcHmac }

    /// Two namespaces joined by a veth; every SA and policy comes from XFRMClient. Ping must pass, and
    /// the SAs' packet counters (from the client's dump) prove the packets went through ESP.
    @Test(arguments: Transform.allCases)
    func pingPassesThroughESPInstalledByTheClient(_ transform: Transform) async throws {
        let left = try await NetworkNamespace.create(prefix: "xfrm-l")
        defer { left.destroy() }
        let right = try await NetworkNamespace.create(prefix: "xfrm-r")
        defer { right.destroy() }
        let suffix = String(UInt16.random(in: 0...UInt16.max), radix: 16)
        try await Shell.run("ip", "link", "add", "xl\(suffix)", "type", "veth", "peer", "name", "xr\(suffix)")
        try await Shell.run("ip", "link", "set", "xl\(suffix)", "netns", left.name)
        try await Shell.run("ip", "link", "set", "xr\(suffix)", "netns", right.name)
        try await Shell.run("ip", "-n", left.name, "addr", "add", "10.99.0.1/24", "dev", "xl\(suffix)")
        try await Shell.run("ip", "-n", right.name, "addr", "add", "10.99.0.2/24", "dev", "xr\(suffix)")
        try await Shell.run("ip", "-n", left.name, "link", "set", "xl\(suffix)", "up")
        try await Shell.run("ip", "-n", right.name, "link", "set", "xr\(suffix)", "up")

        let l = XFRMFixtures.address("10.99.0.1"), r = XFRMFixtures.address("10.99.0.2")
        func sa(_ source: IPAddress, _ destination: IPAddress, spi: UInt32) -> XFRMState {
            switch transform {
            case .aead:
                XFRMFixtures.aeadState(source: source.description, destination: destination.description, spi: spi, mark: nil)
            case .cbcHmac:
                XFRMFixtures.cbcState(source: source.description, destination: destination.description, spi: spi)
            }
        }
        func policies(local: IPAddress, peer: IPAddress, outSPI: UInt32, inSPI: UInt32) -> [XFRMRequest] {
            [.addPolicy(XFRMPolicy(selector: XFRMSelector(source: IPPrefix(host: local), destination: IPPrefix(host: peer)),
                                   direction: .out, templates: [XFRMTemplate(source: local, destination: peer, spi: outSPI, reqid: sa(local, peer, spi: outSPI).reqid)])),
             .addPolicy(XFRMPolicy(selector: XFRMSelector(source: IPPrefix(host: peer), destination: IPPrefix(host: local)),
                                   direction: .in, templates: [XFRMTemplate(source: peer, destination: local, spi: inSPI, reqid: sa(peer, local, spi: inSPI).reqid)]))]
        }
        let leftClient = try XFRMClient(networkNamespacePath: left.path)
        let rightClient = try XFRMClient(networkNamespacePath: right.path)
        let toRight = sa(l, r, spi: 0x1001), toLeft = sa(r, l, spi: 0x2002)

        // Policies without SAs: the kernel must refuse to send in plaintext (negative control).
        #expect(leftClient.perform(policies(local: l, peer: r, outSPI: 0x1001, inSPI: 0x2002)).allSatisfy { (try? $0.get()) != nil })
        #expect(rightClient.perform(policies(local: r, peer: l, outSPI: 0x2002, inSPI: 0x1001)).allSatisfy { (try? $0.get()) != nil })
        let (blocked, _) = try await Shell.status(["ip", "netns", "exec", left.name, "ping", "-c", "1", "-W", "1", "10.99.0.2"])
        #expect(blocked != 0, "with OUT policies and no SA, ping must not pass")

        for client in [leftClient, rightClient] {
            #expect(client.perform([.addState(toRight), .addState(toLeft)]).allSatisfy { (try? $0.get()) != nil })
        }
        let output = try await Shell.run("ip", "netns", "exec", left.name, "ping", "-c", "3", "-i", "0.2", "-W", "2", "10.99.0.2")
        #expect(output.contains("3 received"))

        let leftStates = try leftClient.states(), rightStates = try rightClient.states()
        let sentLeft = try #require(leftStates.first { $0.spi == 0x1001 }?.counters)
        let receivedLeft = try #require(leftStates.first { $0.spi == 0x2002 }?.counters)
        let receivedRight = try #require(rightStates.first { $0.spi == 0x1001 }?.counters)
        let sentRight = try #require(rightStates.first { $0.spi == 0x2002 }?.counters)
        #expect(sentLeft.packets >= 3 && receivedRight.packets >= 3, "echo requests went through SA 0x1001")
        #expect(sentRight.packets >= 3 && receivedLeft.packets >= 3, "echo replies went through SA 0x2002")
        #expect(sentLeft.bytes > 0 && sentLeft.useTime > 0)
    }

    @Test func monitorReportsStateChanges() async throws {
        try await NetworkNamespace.with(prefix: "xfrm-vm") { namespace in
            let monitor = try XFRMMonitor(networkNamespacePath: namespace.path)
            let client = try XFRMClient(networkNamespacePath: namespace.path)
            let state = XFRMFixtures.aeadState()
            try client.add(state)
            try client.delete(state.id)
            var events: [XFRMEvent] = []
            for await event in monitor.events {
                events.append(event)
                if events.count == 2 { break }
            }
            guard events.count == 2 else { Issue.record("events: \(events)"); return }
            if case .stateAdded(let s) = events[0] { #expect(withoutCounters(s) == state) } else { Issue.record("\(events[0])") }
            if case .stateDeleted(let s) = events[1] { #expect(s.id == state.id) } else { Issue.record("\(events[1])") }
            monitor.stop()
        }
    }
}
