@testable import Agent
import IPsecPrimitives
import Keys
import Synchronization
import Testing

@Suite struct PairKeyCacheTests {
    @Test func derivesOncePerPairAndRederivesWhenKeyMaterialChanges() {
        let calls = Mutex(0)
        let cache = PairKeyCache(derive: { key, s, d, sb, db in
            calls.withLock { $0 += 1 }
            return TestKeys.operations.derive(key, s, d, sb, db)
        })
        let derive = cache.derivation
        let (a, b) = (IPAddress("192.0.2.1")!, IPAddress("192.0.2.2")!)
        let first = derive(TestKeys.key(1), a, b, "x", "y")
        #expect(derive(TestKeys.key(1), a, b, "x", "y") == first)
        #expect(calls.withLock { $0 } == 1)
        // Other direction, other boot ID, other material under the same ID: each derived afresh.
        #expect(derive(TestKeys.key(1), b, a, "y", "x") != first)
        #expect(derive(TestKeys.key(1), a, b, "x", "z") != first)
        #expect(derive(TestKeys.key(1, byte: 0x55), a, b, "x", "y") != first)
        #expect(calls.withLock { $0 } == 4)
        cache.retain(keys: [KeyID(2)!])
        #expect(cache.count == 0)
    }
}
