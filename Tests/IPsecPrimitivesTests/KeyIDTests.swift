import Testing
@testable import IPsecPrimitives

@Suite struct KeyIDTests {
    @Test func rangeIsOneToFifteen() {
        #expect(KeyID(0) == nil)
        #expect(KeyID(16) == nil)
        #expect(KeyID(-1) == nil)
        #expect(KeyID(1)?.rawValue == 1)
        #expect(KeyID(15)?.rawValue == 15)
    }

    @Test func nextWrapsFifteenToOne() {
        #expect(KeyID(15)!.next == KeyID(1)!)
        #expect(KeyID(1)!.previous == KeyID(15)!)
        #expect(KeyID(7)!.next == KeyID(8)!)
    }

    @Test(arguments: [(1, 2, 1), (2, 1, 1), (1, 15, 15), (15, 1, 15), (14, 15, 14), (5, 5, 5), (3, 7, 3), (15, 3, 15)])
    func olderWithWrap(a: Int, b: Int, expected: Int) {
        #expect(KeyID.older(KeyID(a)!, KeyID(b)!) == KeyID(expected)!)
    }

    @Test func everyAdjacentPairOrdersOneWay() {
        for raw in 1...15 {
            let k = KeyID(raw)!
            #expect(k.isOlder(than: k.next))
            #expect(!k.next.isOlder(than: k))
            #expect(!k.isOlder(than: k))
        }
    }
}
