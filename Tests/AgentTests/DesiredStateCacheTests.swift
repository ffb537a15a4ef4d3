@testable import Agent
import IPsecPrimitives
import Keys
import Synchronization
import Testing
import TestSupport
import XFRM

/// The memoized desired state must always equal the one computed from scratch, and a steady pass must reuse it.
@Suite struct DesiredStateCacheTests {
    static let local = LocalNode(name: "n1", nodeID: 1, underlay: IPAddress("192.0.2.1")!,
                                 podCIDRs: [IPPrefix("10.1.0.0/24")!], bootID: "boot-1")

    static func peer(_ i: Int, cidr: String? = nil) -> Peer {
        Peer(name: "n\(i)", nodeID: UInt16(i), underlay: IPAddress("192.0.2.\(i)")!,
             podCIDRs: [IPPrefix(cidr ?? "10.\(i).0.0/24")!], bootID: "boot-\(i)")
    }

    struct World {
        var local = DesiredStateCacheTests.local
        var peers: [String: Peer] = [:]
        var peerKeys: [String: PeerKeys] = [:]
        var keys: [KeyID: IPsecKey] = [:]

        func fresh() -> DesiredState {
            DesiredState(local: local, peers: peers.values, peerKeys: peerKeys, keys: keys,
                         derive: TestKeys.operations.derive)
        }
        /// The cache's index, flattened into one state (and checked to find each of its objects by identity).
        func cached(_ cache: inout DesiredStateCache) -> DesiredState {
            let index = cache.index(peers: peers, peerKeys: peerKeys, local: local, keys: keys,
                                    derive: TestKeys.operations.derive)
            var flat = DesiredState()
            index.forEachState { flat.states[$0.id] = $0 }
            index.forEachPolicy { flat.policies[$0.id] = $0 }
            for state in cache.peerStates.values { flat.keptStates.formUnion(state.keptStates) }
            #expect(index.stateCount == flat.states.count && index.policyCount == flat.policies.count)
            for state in flat.states.values { #expect(index.desiredState(matching: state) == state) }
            for policy in flat.policies.values { #expect(index.desiredPolicy(matching: policy) == policy) }
            return flat
        }
    }

    static func world(peers n: Int) -> World {
        var w = World()
        w.keys = [KeyID(1)!: TestKeys.key(1)]
        for i in 2...(n + 1) {
            let p = peer(i)
            w.peers[p.name] = p
            w.peerKeys[p.name] = PeerKeys(inbound: [KeyID(1)!], outbound: [KeyID(1)!])
        }
        return w
    }

    @Test func steadyPassReusesEverythingAndEqualsAFreshComputation() {
        var w = Self.world(peers: 20)
        var cache = DesiredStateCache()
        let first = w.cached(&cache)
        #expect(first == w.fresh())
        #expect(first.states.count == 40)
        #expect(first.policies.count == 20 * 3 + DesiredState.dropPolicies.count)
        let misses = cache.misses
        #expect(misses == 20)
        // Acknowledgements and advertisements change a peer's record, not its objects.
        w.peers["n5"]!.xfrmRevision = 99
        w.peers["n5"]!.spi = KeyID(2)
        w.peers["n6"]!.keyFingerprint = "other"
        #expect(w.cached(&cache) == first)
        #expect(cache.misses == misses)
    }

    @Test func everyInputThatShapesObjectsInvalidatesTheRightEntries() {
        var w = Self.world(peers: 10)
        var cache = DesiredStateCache()
        _ = w.cached(&cache)
        var misses = cache.misses

        // A peer's pod CIDR: only that peer is recomputed.
        w.peers["n3"]!.podCIDRs = [IPPrefix("10.33.0.0/24")!]
        #expect(w.cached(&cache) == w.fresh())
        #expect(cache.misses == misses + 1)
        misses = cache.misses

        // A peer's live keys (a rotation step).
        w.keys[KeyID(2)!] = TestKeys.key(2)
        w.peerKeys["n4"]!.inbound.insert(KeyID(2)!)
        #expect(w.cached(&cache) == w.fresh())
        #expect(cache.misses == misses + 1)  // a new key changes no other peer's objects
        misses = cache.misses
        w.peerKeys["n5"]!.outbound.insert(KeyID(2)!)
        #expect(w.cached(&cache) == w.fresh())
        #expect(cache.misses == misses + 1)

        // Boot ID and node ID change the derived keys and SPIs.
        w.peers["n6"]!.bootID = "rebooted"
        w.peers["n7"]!.nodeID = 77
        #expect(w.cached(&cache) == w.fresh())

        // The local node (its node ID is in every SPI it sends with).
        w.local.nodeID = 9
        #expect(w.cached(&cache) == w.fresh())

        // Other key material under the same key ID.
        w.keys[KeyID(1)!] = TestKeys.key(1, byte: 0x77)
        #expect(w.cached(&cache) == w.fresh())

        // A departed peer's objects leave the merged state.
        w.peers["n8"] = nil
        w.peerKeys["n8"] = nil
        let merged = w.cached(&cache)
        #expect(merged == w.fresh())
        #expect(!merged.states.values.contains { $0.destination == IPAddress("192.0.2.8")! })

        // A new peer.
        let p = Self.peer(42)
        w.peers[p.name] = p
        w.peerKeys[p.name] = PeerKeys(inbound: [KeyID(1)!], outbound: [KeyID(1)!])
        #expect(w.cached(&cache) == w.fresh())
    }

    @Test func aRotationDerivesOnlyTheNewKeysPairKeys() {
        let calls = Mutex(0)
        let derive: PairKeyDerivation = { key, s, d, sb, db in
            calls.withLock { $0 += 1 }
            return TestKeys.operations.derive(key, s, d, sb, db)
        }
        var w = Self.world(peers: 10)
        var cache = DesiredStateCache()
        func refresh() -> Int {
            let index = cache.index(peers: w.peers, peerKeys: w.peerKeys, local: w.local, keys: w.keys,
                                    derive: derive)
            var flat = DesiredState()
            index.forEachState { flat.states[$0.id] = $0 }
            index.forEachPolicy { flat.policies[$0.id] = $0 }
            #expect(flat == w.fresh())  // reused transforms are the ones a fresh derivation gives
            return calls.withLock { $0 }
        }
        #expect(refresh() == 20)  // one IN and one OUT pair per peer
        #expect(refresh() == 20)

        // Rotation: key 2 loaded, then added to every peer.
        w.keys[KeyID(2)!] = TestKeys.key(2)
        #expect(refresh() == 20)
        for name in Array(w.peerKeys.keys) {
            w.peerKeys[name]!.inbound.insert(KeyID(2)!)
            w.peerKeys[name]!.outbound.insert(KeyID(2)!)
        }
        #expect(refresh() == 40)  // key 2's pairs only

        // Reclaim: key 1 leaves every peer, then its material goes.
        for name in Array(w.peerKeys.keys) {
            w.peerKeys[name]!.inbound.remove(KeyID(1)!)
            w.peerKeys[name]!.outbound.remove(KeyID(1)!)
        }
        w.keys[KeyID(1)!] = nil
        #expect(refresh() == 40)

        // Other material under key 2: derived again; a rebooted peer: its pairs only.
        w.keys[KeyID(2)!] = TestKeys.key(2, byte: 0x42)
        #expect(refresh() == 60)
        w.peers["n3"]!.bootID = "rebooted"
        #expect(refresh() == 62)
    }

    /// A rotation step patches a peer's objects (only the keys that came or went) instead of rebuilding them;
    /// through random changes of live keys, key material and peer identity, the cache must still equal a fresh
    /// computation, and the per-peer linear diff must equal the general one.
    @Test(arguments: 0..<6) func patchedObjectsEqualAFreshComputationThroughRandomChanges(seed: UInt64) {
        var rng = SeededRandom(seed: seed)
        var w = Self.world(peers: 6)
        w.peers["n3"]!.podCIDRs.append(IPPrefix("10.103.0.0/24")!)  // a peer with two pod CIDRs
        let material = (1...4).map { TestKeys.key($0) }
        w.keys = [KeyID(1)!: material[0], KeyID(2)!: material[1], KeyID(3)!: material[2]]  // key 4: no material
        var cache = DesiredStateCache()
        var previous: [String: PeerObjects] = [:]
        var additionSteps = 0
        for _ in 0..<150 {
            let name = "n\(Int.random(in: 2...7, using: &rng))"
            let key = KeyID(Int.random(in: 1...4, using: &rng))!
            switch Int.random(in: 0..<20, using: &rng) {
            case 0..<7:
                if !w.peerKeys[name]!.inbound.insert(key).inserted { w.peerKeys[name]!.inbound.remove(key) }
            case 7..<14:
                if !w.peerKeys[name]!.outbound.insert(key).inserted { w.peerKeys[name]!.outbound.remove(key) }
            case 14..<16:  // two keys of a peer change at once
                w.peerKeys[name]!.inbound.formSymmetricDifference([key, key.next])
                w.peerKeys[name]!.outbound.formSymmetricDifference([key])
            case 16:
                w.keys[key] = w.keys[key] == nil ? material[Int(key.rawValue) - 1] : nil
            case 17:
                w.keys[key] = TestKeys.key(Int(key.rawValue), byte: UInt8.random(in: 0...255, using: &rng))
            case 18:
                w.peers[name]!.bootID = "boot-\(Int.random(in: 0...3, using: &rng))"
            default:
                w.peers[name]!.podCIDRs = w.peers[name]!.podCIDRs.count == 1
                    ? [w.peers[name]!.podCIDRs[0], IPPrefix("10.200.\(name.dropFirst()).0/24")!]
                    : [w.peers[name]!.podCIDRs[0]]
            }
            #expect(w.cached(&cache) == w.fresh())
            for (peer, objects) in cache.peerStates {
                let before = previous[peer] ?? PeerObjects()
                let general = XFRMDiff(desired: objects, actualStates: before.states, actualPolicies: before.policies)
                #expect(XFRMDiff(installed: before, desired: objects) == general)
                // The additions-only path, where it applies, gives the same diff.
                var added = XFRMDiff(desired: PeerObjects(), actualStates: [], actualPolicies: [])
                if XFRMDiff.forEachAddition(installed: before, desired: objects,
                                            state: { added.addStates.append($0) },
                                            policy: { added.addPolicies.append($0) }) {
                    #expect(added == general)
                    if !added.isEmpty { additionSteps += 1 }
                }
            }
            previous = cache.peerStates
        }
        #expect(additionSteps > 0)  // the path was taken
    }

    @Test func policyHashThresholdsCoverThePodPrefixesAndOnlyEverGoDown() {
        let pods = [IPPrefix("10.244.1.0/24")!, IPPrefix("fd00:10:244:1::/64")!]
        let lowered = DatapathLayout.policyHashThresholds(current: .kernelDefault, podCIDRs: pods)
        #expect(lowered.ipv4 == .init(local: 0, remote: 24))
        #expect(lowered.ipv6 == .init(local: 0, remote: 64))
        // Already lower (another component's choice): kept.
        let other = XFRMPolicyHashThresholds(ipv4: .init(local: 0, remote: 16), ipv6: .init(local: 0, remote: 48))
        #expect(DatapathLayout.policyHashThresholds(current: other, podCIDRs: pods) == other)
        // No pod CIDR of a family: that family untouched.
        #expect(DatapathLayout.policyHashThresholds(current: .kernelDefault, podCIDRs: [pods[0]]).ipv6 == .init(local: 128, remote: 128))
        // Every policy the agent programs for such pods passes the lowered thresholds: OUT selects any → /24 (local
        // bits 0, remote 24), IN and FWD /24 → /24.
        let w = Self.world(peers: 3)
        for policy in w.fresh().policies.values where policy.action == .allow {
            let (localBits, remoteBits) = policy.direction == .out
                ? (policy.selector.source.length, policy.selector.destination.length)
                : (policy.selector.destination.length, policy.selector.source.length)
            #expect(localBits >= Int(lowered.ipv4.local) && remoteBits >= Int(lowered.ipv4.remote))
        }
    }

    @Test func perPeerStateIsThePeersShareOfTheWhole() {
        let w = Self.world(peers: 5)
        var cache = DesiredStateCache()
        let one = cache.state(for: w.peers["n3"]!, live: w.peerKeys["n3"]!, local: w.local, keys: w.keys,
                              derive: TestKeys.operations.derive)
        let whole = w.fresh()
        #expect(one.states.count == 2 && one.policies.count == 3)
        for state in one.states { #expect(whole.states[state.id] == state) }
        for policy in one.policies { #expect(whole.policies[policy.id] == policy) }
    }

    @Test func objectsOfPeersSharingANodeIDOrPodCIDRAreNeitherDeletedNorReAdded() {
        var w = Self.world(peers: 4)
        // A departed peer's node ID already reassigned, and a pod CIDR claimed twice.
        var twin = Self.peer(9)
        twin.nodeID = 3
        twin.podCIDRs = w.peers["n4"]!.podCIDRs
        w.peers[twin.name] = twin
        w.peerKeys[twin.name] = PeerKeys(inbound: [KeyID(1)!], outbound: [KeyID(1)!])
        var cache = DesiredStateCache()
        let index = cache.index(peers: w.peers, peerKeys: w.peerKeys, local: w.local, keys: w.keys,
                                derive: TestKeys.operations.derive)
        // The kernel holds every peer's objects (one copy of each identity).
        var states: [XFRMStateID: XFRMState] = [:]
        var policies: [XFRMPolicyID: XFRMPolicy] = DesiredState.dropPolicies
        for objects in cache.peerStates.values {
            for state in objects.states where states[state.id] == nil { states[state.id] = state }
            for policy in objects.policies where policies[policy.id] == nil { policies[policy.id] = policy }
        }
        let diff = XFRMDiff(desired: index, actualStates: states.values, actualPolicies: policies.values)
        #expect(diff.deleteStates.isEmpty && diff.deletePolicies.isEmpty)
        #expect(diff.addStates.isEmpty && diff.addPolicies.isEmpty)
        // The twin's OUT SA is found through the shared node ID.
        let twinOut = cache.peerStates[twin.name]!.states.first { $0.destination == twin.underlay }!
        #expect(index.desiredState(matching: twinOut) == twinOut)
    }

    @Test func diffFindsEachMissingExtraAndChangedObjectAmongMany() {
        let w = Self.world(peers: 50)
        let want = w.fresh()
        var states = Array(want.states.values)
        var policies = Array(want.policies.values)
        #expect(XFRMDiff(desired: want, actualStates: states, actualPolicies: policies).isEmpty)

        let lostState = states.removeLast()
        let lostPolicy = policies.removeLast()
        var tampered = policies[0]
        tampered.priority += 1
        policies[0] = tampered
        var foreign = policies[1]
        foreign.selector.destination = IPPrefix("172.16.0.0/16")!
        policies.append(foreign)
        let diff = XFRMDiff(desired: want, actualStates: states, actualPolicies: policies)
        #expect(diff.addStates == [lostState])
        #expect(diff.addPolicies == [lostPolicy])
        #expect(diff.updatePolicies == [want.policies[tampered.id]!])
        #expect(diff.deletePolicies == [foreign.id])
        #expect(diff.deleteStates.isEmpty && diff.replaceStates.isEmpty)
        #expect(diff.count == 4)
    }
}
