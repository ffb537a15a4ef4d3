import Agent
import Datapath
import IPsecPrimitives
import Keys
import Synchronization
import XFRM

/// One ordered log shared by every fake of a node, so tests can assert the order of effects.
final class EffectLog: Sendable {
    enum Effect: Equatable, Sendable {
        case xfrm(XFRMRequest, ok: Bool)
        case publish(NodeRecordUpdate)
        case setLocalSPI(KeyID?)
        case upsertPeer(IPPrefix, PeerEncryptEntry)
        case deletePeer(IPPrefix)
    }
    private let entries = Mutex<[Effect]>([])
    func append(_ e: Effect) { entries.withLock { $0.append(e) } }
    var all: [Effect] { entries.withLock { $0 } }
    func clear() { entries.withLock { $0.removeAll() } }
}

/// The kernel's XFRM database in memory, with the kernel's add/delete semantics and injectable failures.
final class FakeKernel: XFRMKernel {
    struct DB {
        var states: [XFRMStateID: XFRMState] = [:]
        var policies: [XFRMPolicyID: XFRMPolicy] = [:]
        var failAddsTo: Set<IPAddress> = []
        var dumpFails = false
    }
    let db = Mutex(DB())
    let log: EffectLog

    init(log: EffectLog) { self.log = log }

    func apply(_ requests: [XFRMRequest]) async -> [Result<Void, any Error>] {
        db.withLock { db in
            requests.map { request in
                let result: Result<Void, any Error>
                switch request {
                case .addState(let s):
                    if db.failAddsTo.contains(s.destination) {
                        result = .failure(XFRMKernelError.failed("injected failure"))
                    } else if db.states[s.id] != nil {
                        result = .failure(XFRMKernelError.alreadyExists)
                    } else {
                        db.states[s.id] = s
                        result = .success(())
                    }
                case .updateState(let s):
                    result = db.states[s.id] == nil ? .failure(XFRMKernelError.notFound) : .success(())
                    if db.states[s.id] != nil { db.states[s.id] = s }
                case .deleteState(let id):
                    result = db.states.removeValue(forKey: id) == nil ? .failure(XFRMKernelError.notFound) : .success(())
                case .addPolicy(let p):
                    if db.policies[p.id] != nil {
                        result = .failure(XFRMKernelError.alreadyExists)
                    } else {
                        db.policies[p.id] = p
                        result = .success(())
                    }
                case .updatePolicy(let p):
                    db.policies[p.id] = p
                    result = .success(())
                case .deletePolicy(let id):
                    result = db.policies.removeValue(forKey: id) == nil ? .failure(XFRMKernelError.notFound) : .success(())
                }
                if case .success = result { log.append(.xfrm(request, ok: true)) } else { log.append(.xfrm(request, ok: false)) }
                return result
            }
        }
    }

    func ownedStates() async throws -> [XFRMState] {
        try db.withLock { db in
            if db.dumpFails { throw XFRMKernelError.failed("dump failed") }
            return Array(db.states.values)
        }
    }

    func ownedPolicies() async throws -> [XFRMPolicy] {
        try db.withLock { db in
            if db.dumpFails { throw XFRMKernelError.failed("dump failed") }
            return Array(db.policies.values)
        }
    }

    func state(_ id: XFRMStateID) async throws -> XFRMState? { db.withLock { $0.states[id] } }
    func policy(_ id: XFRMPolicyID) async throws -> XFRMPolicy? { db.withLock { $0.policies[id] } }

    var states: [XFRMStateID: XFRMState] { db.withLock { $0.states } }
    var policies: [XFRMPolicyID: XFRMPolicy] { db.withLock { $0.policies } }

    /// Adds packets to an SA's counters (traffic through it).
    func addPackets(_ n: UInt64, to id: XFRMStateID) {
        db.withLock { db in
            guard var s = db.states[id] else { return }
            var c = s.counters ?? XFRMLifetimeCounters()
            c.packets += n
            s.counters = c
            db.states[id] = s
        }
    }
}

/// The BPF maps in memory (what pinned maps keep across an agent restart).
final class FakeEncryptMap: EncryptMap {
    struct State {
        var local: KeyID?
        var peers: [IPPrefix: PeerEncryptEntry] = [:]
    }
    let state = Mutex(State())
    let log: EffectLog
    init(log: EffectLog) { self.log = log }

    func setLocalSPI(_ spi: KeyID?) throws {
        state.withLock { $0.local = spi }
        log.append(.setLocalSPI(spi))
    }
    func localSPI() throws -> KeyID? { state.withLock { $0.local } }
    func upsertPeer(_ prefix: IPPrefix, _ entry: PeerEncryptEntry) throws {
        state.withLock { $0.peers[prefix] = entry }
        log.append(.upsertPeer(prefix, entry))
    }
    func deletePeer(_ prefix: IPPrefix) throws {
        state.withLock { $0.peers[prefix] = nil }
        log.append(.deletePeer(prefix))
    }
    func peers() throws -> [IPPrefix: PeerEncryptEntry] { state.withLock { $0.peers } }
}

/// A virtual clock: time moves only when a test says so.
final class ManualClock: Sendable {
    private let value = Mutex<Duration>(.zero)
    var now: Duration { value.withLock { $0 } }
    func advance(by d: Duration) { value.withLock { $0 += d } }
}

/// Deterministic stand-ins for the key functions (the real HKDF is tested in KeysTests).
enum TestKeys {
    static func key(_ id: Int, byte: UInt8? = nil) -> IPsecKey {
        let b = byte ?? UInt8(id)
        return IPsecKey(id: KeyID(id)!, algorithm: .aesGCM(keyBits: 128, icvBits: 128),
                        encryptionKey: SecretBytes([UInt8](repeating: b, count: 20)))
    }

    static let operations = KeyOperations(
        derive: { key, src, dst, srcBoot, dstBoot in
            // Direction-bound and both-ends-reproducible, like the real derivation: a function of all inputs.
            var bytes = key.encryptionKey.revealed
            let mix = src.bytes + dst.bytes + Array(srcBoot.utf8) + Array(dstBoot.utf8)
            for (i, m) in mix.enumerated() { bytes[i % bytes.count] &+= m &* UInt8(truncatingIfNeeded: i + 1) }
            return PairKey(algorithm: key.algorithm, encryptionKey: SecretBytes(bytes), authenticationKey: nil)
        },
        fingerprint: { key in
            "fp-\(key.id)-" + String(key.encryptionKey.revealed.reduce(0) { $0 &* 31 &+ Int($1) })
        },
        checkRotation: { new, current in
            struct RuleError: Error, CustomStringConvertible { var description: String }
            if new.algorithm != current.algorithm { throw RuleError(description: "algorithm must not change") }
            // The key-ID order rule as the real one (KeyRotationRule) applies it.
            if !current.id.isOlder(than: new.id) { throw KeyRotationError.keyIDOrder(current: current.id, new: new.id) }
        })
}
