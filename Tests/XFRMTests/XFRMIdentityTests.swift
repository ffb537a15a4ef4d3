import IPsecPrimitives
import Testing
@testable import XFRM

/// `hasID` (the allocation-free identity match the agent's per-peer diff uses) agrees with comparing `id`s.
@Suite struct XFRMIdentityTests {
    static let marks: [XFRMMark?] = [nil, XFRMMark(value: 0x2E00), XFRMMark(value: 0x2E00, mask: 0xFF00), XFRMMark(value: 0x3E00)]

    @Test func stateHasIDAgreesWithIDEquality() {
        var states: [XFRMState] = []
        for destination in ["192.168.10.2", "192.168.10.3", "fd00::2"] {
            for spi: UInt32 in [0x1234, 0x1235] {
                for mark in Self.marks {
                    var state = XFRMFixtures.aeadState(spi: spi)
                    state.destination = XFRMFixtures.address(destination)
                    state.mark = mark
                    states.append(state)
                    var ah = state
                    ah.proto = .ah
                    states.append(ah)
                }
            }
        }
        for a in states {
            #expect(a.hasID(a.id))
            for b in states { #expect(a.hasID(b.id) == (a.id == b.id)) }
        }
    }

    @Test func policyHasIDAgreesWithIDEquality() {
        var policies: [XFRMPolicy] = []
        for index in 0..<3 {
            for direction in [XFRMPolicyDirection.in, .out, .fwd] {
                for mark in Self.marks {
                    var policy = XFRMFixtures.outPolicy(index)
                    policy.direction = direction
                    policy.mark = mark
                    policies.append(policy)
                    var other = policy
                    other.priority += 1  // not part of the identity
                    other.selector.proto = 6  // part of it
                    policies.append(other)
                }
            }
        }
        for a in policies {
            #expect(a.hasID(a.id))
            for b in policies { #expect(a.hasID(b.id) == (a.id == b.id)) }
        }
    }
}
