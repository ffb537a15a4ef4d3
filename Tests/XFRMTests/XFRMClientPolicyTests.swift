import Foundation
import IPsecPrimitives
import TestSupport
import Testing
@testable import XFRM

/// The client against the host kernel's policy database, each test in a fresh network namespace.
@Suite(.enabled(if: Privileges.canCreateNamespaces), .serialized)
struct XFRMClientPolicyTests {
    private func withClient(_ body: (XFRMClient, NetworkNamespace) async throws -> Void) async throws {
        try await NetworkNamespace.with(prefix: "xfrm-test") { namespace in
            let client = try XFRMClient(networkNamespacePath: namespace.path)
            try await body(client, namespace)
        }
    }

    @Test func tenThousandPoliciesAddDumpGetUpdateDeleteInOneBatchEach() async throws {
        try await withClient { client, _ in
            let policies = (0..<10_000).map { XFRMFixtures.outPolicy($0) }
            let added = client.perform(policies.map { .addPolicy($0) })
            #expect(added.count == 10_000)
            #expect(added.allSatisfy { (try? $0.get()) != nil })

            let dumped = try client.policies()
            #expect(dumped.count == 10_000)
            #expect(Set(dumped.map(XFRMFixtures.withoutIndex)) == Set(policies))
            #expect(Set(dumped.map(\.index)).count == 10_000, "the kernel gives each policy its own index")

            let probe = policies[4321]
            let fetched = try #require(try client.policy(probe.id))
            #expect(XFRMFixtures.withoutIndex(fetched) == probe)

            let updated = policies.map { XFRMFixtures.outPolicy(policies.firstIndex(of: $0)!, priority: 200) }
            #expect(client.perform(updated.map { .updatePolicy($0) }).allSatisfy { (try? $0.get()) != nil })
            #expect(try client.policies().allSatisfy { $0.priority == 200 })

            let deleted = client.perform(policies.map { .deletePolicy($0.id) })
            #expect(deleted.allSatisfy { (try? $0.get()) != nil })
            #expect(try client.policies().isEmpty)
            #expect(try client.policy(probe.id) == nil)
        }
    }

    @Test func policyHashThresholdsAreSetAndReadBackBothWays() async throws {
        try await withClient { client, namespace in
            #expect(try client.policyHashThresholds() == .kernelDefault)
            let wanted = XFRMPolicyHashThresholds(ipv4: .init(local: 0, remote: 24), ipv6: .init(local: 0, remote: 64))
            try client.setPolicyHashThresholds(wanted)
            #expect(try client.policyHashThresholds() == wanted)
            let text = try await Shell.run("ip", "-n", namespace.name, "-s", "-s", "xfrm", "policy", "count")
            #expect(text.contains("IPv4 thresholds: local 0 remote 24"))
            #expect(text.contains("IPv6 thresholds: local 0 remote 64"))
            // Set by iproute2, read by the client.
            try await Shell.run("ip", "-n", namespace.name, "xfrm", "policy", "set", "hthresh4", "16", "20")
            #expect(try client.policyHashThresholds().ipv4 == .init(local: 16, remote: 20))
            // Out of range: the kernel's refusal, nothing changed.
            let bad = XFRMPolicyHashThresholds(ipv4: .init(local: 0, remote: 33), ipv6: wanted.ipv6)
            #expect(throws: XFRMError.self) { try client.setPolicyHashThresholds(bad) }
            #expect(try client.policyHashThresholds().ipv4 == .init(local: 16, remote: 20))
        }
    }

    @Test func blockPolicyWithMarkIsReadBackByIproute2() async throws {
        try await withClient { client, namespace in
            let block = XFRMPolicy(
                selector: XFRMSelector(source: XFRMFixtures.prefix("0.0.0.0/0"), destination: XFRMFixtures.prefix("10.0.0.0/8")),
                direction: .out, priority: 4_000, action: .block, mark: XFRMMark(value: 0xE00, mask: 0xF00))
            try client.add(block)
            let text = try await Shell.run("ip", "-n", namespace.name, "xfrm", "policy", "show")
            #expect(text.contains("src 0.0.0.0/0 dst 10.0.0.0/8"))
            #expect(text.contains("dir out action block priority 4000"))
            #expect(text.contains("mark 0xe00/0xf00"))
        }
    }

    @Test func templatesAndIPv6AreReadBackByIproute2() async throws {
        try await withClient { client, namespace in
            let policy = XFRMPolicy(
                selector: XFRMSelector(source: XFRMFixtures.prefix("fd00:a::/64"), destination: XFRMFixtures.prefix("fd00:b::/64")),
                direction: .in, priority: 50, mark: XFRMMark(value: 0xD00, mask: 0xF00),
                templates: [XFRMTemplate(source: XFRMFixtures.address("fd00::1"), destination: XFRMFixtures.address("fd00::2"),
                                         spi: 0x2A, reqid: 7, mode: .tunnel)])
            try client.add(policy)
            let text = try await Shell.run("ip", "-n", namespace.name, "xfrm", "policy", "show")
            #expect(text.contains("src fd00:a::/64 dst fd00:b::/64"))
            #expect(text.contains("dir in priority 50"))
            #expect(text.contains("mark 0xd00/0xf00"))
            #expect(text.contains("tmpl src fd00::1 dst fd00::2"))
            #expect(text.contains("proto esp spi 0x0000002a reqid 7 mode tunnel"))
        }
    }

    @Test func policiesInstalledByIproute2AreDumpedWithTheirFields() async throws {
        try await withClient { client, namespace in
            try await Shell.run("ip", "-n", namespace.name, "xfrm", "policy", "add", "src", "10.1.0.0/16", "dst", "10.2.0.0/16",
                          "proto", "tcp", "dport", "443", "dir", "fwd", "priority", "7", "mark", "0x5", "mask", "0xf",
                          "tmpl", "src", "1.1.1.1", "dst", "2.2.2.2", "proto", "esp", "spi", "0x33", "reqid", "5", "mode", "tunnel")
            try await Shell.run("ip", "-n", namespace.name, "xfrm", "policy", "add", "src", "fd00::/8", "dst", "fd00::/8",
                          "dir", "out", "action", "block")
            let policies = try client.policies()
            #expect(policies.count == 2)
            let fwd = try #require(policies.first { $0.direction == .fwd })
            #expect(fwd.selector.source == XFRMFixtures.prefix("10.1.0.0/16"))
            #expect(fwd.selector.destination == XFRMFixtures.prefix("10.2.0.0/16"))
            #expect(fwd.selector.proto == 6 && fwd.selector.destinationPort == 443 && fwd.selector.sourcePort == nil)
            #expect(fwd.priority == 7 && fwd.action == .allow)
            #expect(fwd.mark == XFRMMark(value: 5, mask: 0xF))
            #expect(fwd.templates == [XFRMTemplate(source: XFRMFixtures.address("1.1.1.1"), destination: XFRMFixtures.address("2.2.2.2"),
                                                   proto: .esp, spi: 0x33, reqid: 5, mode: .tunnel)])
            let block = try #require(policies.first { $0.direction == .out })
            #expect(block.action == .block && block.selector.source.family == .v6 && block.templates.isEmpty && block.mark == nil)
        }
    }

    @Test func openingInsideANamespaceLeavesTheThreadInItsOwnNamespace() async throws {
        try await NetworkNamespace.with(prefix: "xfrm-test") { namespace in
            func currentNamespaceInode() throws -> UInt64 {
                var info = stat()
                guard stat("/proc/thread-self/ns/net", &info) == 0 else { throw XFRMError.system(call: "stat", errno: errno) }
                return UInt64(info.st_ino)
            }
            var target = stat()
            #expect(stat(namespace.path, &target) == 0)
            // No suspension point between the three calls: they run on one thread.
            let before = try currentNamespaceInode()
            let client = try XFRMClient(networkNamespacePath: namespace.path)
            let after = try currentNamespaceInode()
            #expect(before == after)
            #expect(before != UInt64(target.st_ino))
            try client.add(XFRMFixtures.outPolicy(1))
            let inside = try await Shell.run("ip", "-n", namespace.name, "xfrm", "policy", "show")
            #expect(inside.contains("src 10.0.0.1/32 dst 10.200.0.1/32"))
        }
    }

    @Test func dumpsLeaveOutPoliciesTheValueTypesCannotRepresent() async throws {
        try await withClient { client, namespace in
            try await Shell.run("ip", "-n", namespace.name, "xfrm", "policy", "add", "src", "10.9.0.0/16", "dst", "10.8.0.0/16",
                          "dir", "out", "tmpl", "src", "1.1.1.1", "dst", "2.2.2.2", "proto", "esp", "mode", "beet")
            try client.add(XFRMFixtures.outPolicy(5))
            let policies = try client.policies()
            #expect(policies.map(XFRMFixtures.withoutIndex) == [XFRMFixtures.outPolicy(5)])
        }
    }

    @Test func duplicateAddIsAlreadyExistsAndMissingDeleteIsNotFound() async throws {
        try await withClient { client, _ in
            let policy = XFRMFixtures.outPolicy(1)
            try client.add(policy)
            #expect {
                try client.add(policy)
            } throws: { error in
                guard case .alreadyExists(let request, _) = error as? XFRMError else { return false }
                return request.contains("dir out")
            }
            #expect {
                try client.delete(XFRMFixtures.outPolicy(2).id)
            } throws: { error in
                guard case .notFound = error as? XFRMError else { return false }
                return true
            }
            #expect(try client.policy(XFRMFixtures.outPolicy(2).id) == nil)
        }
    }

    @Test func batchWithFailuresGivesPerRequestResults() async throws {
        try await withClient { client, _ in
            let one = XFRMFixtures.outPolicy(1), two = XFRMFixtures.outPolicy(2), three = XFRMFixtures.outPolicy(3)
            var mixed = XFRMFixtures.outPolicy(4)
            mixed.selector.destination = XFRMFixtures.prefix("fd00::1/128")  // mixed families: never sent
            let results = client.perform([.addPolicy(one), .addPolicy(one), .addPolicy(two), .deletePolicy(three.id),
                                          .addPolicy(mixed), .addPolicy(three)])
            #expect(results.count == 6)
            #expect((try? results[0].get()) != nil)
            if case .failure(.alreadyExists) = results[1] {} else { Issue.record("expected alreadyExists, got \(results[1])") }
            #expect((try? results[2].get()) != nil)
            if case .failure(.notFound) = results[3] {} else { Issue.record("expected notFound, got \(results[3])") }
            if case .failure(.invalidRequest) = results[4] {} else { Issue.record("expected invalidRequest, got \(results[4])") }
            #expect((try? results[5].get()) != nil)
            let remaining = try client.policies()
            #expect(Set(remaining.map(XFRMFixtures.withoutIndex)) == [one, two, three])
        }
    }

    @Test(.enabled(if: !Privileges.inRealKernelVM, "the host kernel has no ESP; in the VM the add succeeds"))
    func espStateOnHostSurfacesTheKernelsExtendedAck() async throws {
        try await withClient { client, _ in
            // cbc(aes) and hmac(sha256) exist on the host, so the kernel gets as far as the missing ESP type.
            let state = XFRMFixtures.cbcState(source: "192.168.10.1", destination: "192.168.10.2", spi: 0x1234)
            do {
                try client.add(state)
                Issue.record("the host kernel accepted an ESP SA; this test assumes it has no ESP")
            } catch let error as XFRMError {
                #expect(error.kernelMessage == "Requested type not found")
                #expect(error.description.contains("Requested type not found"))
                #expect(error.description.contains("EPROTONOSUPPORT"))
                #expect(error.description.contains("spi 0x1234"))
                guard case .authEncrypt(_, let authKey, _, _, let cryptKey) = state.algorithm else { return }
                for key in [authKey, cryptKey] {
                    #expect(!error.description.contains(key.revealed.map { String($0, radix: 16) }.joined()))
                }
            }
        }
    }

    @Test func monitorReportsPolicyChanges() async throws {
        try await NetworkNamespace.with(prefix: "xfrm-mon") { namespace in
            let monitor = try XFRMMonitor(networkNamespacePath: namespace.path)
            let client = try XFRMClient(networkNamespacePath: namespace.path)
            let policy = XFRMFixtures.outPolicy(9)
            var updated = policy
            updated.priority = 300
            try client.add(policy)
            try client.update(updated)
            try client.delete(policy.id)
            var events: [XFRMEvent] = []
            for await event in monitor.events {
                events.append(event)
                if events.count == 3 { break }
            }
            #expect(events.count == 3)
            guard events.count == 3 else { return }
            if case .policyAdded(let p) = events[0] { #expect(XFRMFixtures.withoutIndex(p) == policy) } else { Issue.record("\(events[0])") }
            if case .policyUpdated(let p) = events[1] { #expect(p.priority == 300) } else { Issue.record("\(events[1])") }
            if case .policyDeleted(let p) = events[2] { #expect(p.id == policy.id) } else { Issue.record("\(events[2])") }
            monitor.stop()
        }
    }

    @Test func monitorReportsResyncNeededWhenNotificationsAreLost() async throws {
        try await NetworkNamespace.with(prefix: "xfrm-mon") { namespace in
            // A 4 KiB receive buffer cannot hold the notifications of 10,000 policies added in one batch.
            let monitor = try XFRMMonitor(networkNamespacePath: namespace.path, receiveBufferBytes: 4096, bufferingPolicy: .unbounded)
            let client = try XFRMClient(networkNamespacePath: namespace.path)
            #expect(client.perform((0..<10_000).map { .addPolicy(XFRMFixtures.outPolicy($0)) }).allSatisfy { (try? $0.get()) != nil })
            try await Task.sleep(for: .milliseconds(200))  // let the reader drain, so the marker below is not lost too
            try client.add(XFRMFixtures.outPolicy(10_001))  // the last event: marks the end of what the kernel sent
            let safetyNet = Task { try await Task.sleep(for: .seconds(30)); monitor.stop() }
            defer { safetyNet.cancel() }
            var added = 0, resyncs = 0
            for await event in monitor.events {
                switch event {
                case .resyncNeeded: resyncs += 1
                case .policyAdded(let policy):
                    added += 1
                    if XFRMFixtures.withoutIndex(policy) == XFRMFixtures.outPolicy(10_001) { monitor.stop() }
                default: break
                }
            }
            #expect(resyncs >= 1, "lost notifications must be reported")
            #expect(added < 10_001, "some notifications were lost (\(added) arrived)")
        }
    }

    @Test func monitorStreamFinishesOnStop() async throws {
        try await NetworkNamespace.with(prefix: "xfrm-mon") { namespace in
            let monitor = try XFRMMonitor(networkNamespacePath: namespace.path)
            monitor.stop()
            var count = 0
            for await _ in monitor.events { count += 1 }
            #expect(count == 0)
        }
    }
}
