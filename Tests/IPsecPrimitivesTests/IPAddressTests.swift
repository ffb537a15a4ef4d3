import Foundation
import Testing
@testable import IPsecPrimitives

@Suite struct IPAddressTests {
    @Test func parsesAndFormatsIPv4() throws {
        let a = try #require(IPAddress("10.1.2.3"))
        #expect(a == .v4(0x0A01_0203))
        #expect(a.description == "10.1.2.3")
        #expect(a.bytes == [10, 1, 2, 3])
    }

    @Test func parsesAndFormatsIPv6() throws {
        let a = try #require(IPAddress("fd00::1"))
        #expect(a.description == "fd00::1")
        #expect(a.bytes.first == 0xFD && a.bytes.last == 1)
        #expect(IPAddress(bytes: a.bytes) == a)
    }

    @Test(arguments: ["", "10.0.0", "10.0.0.256", "fd00:::1", "host", "1.2.3.4 "])
    func rejectsGarbage(text: String) {
        #expect(IPAddress(text) == nil)
    }

    @Test func prefixMasksHostBitsAndContains() throws {
        let p = try #require(IPPrefix("10.0.1.77/24"))
        #expect(p.description == "10.0.1.0/24")
        #expect(p.contains(IPAddress("10.0.1.200")!))
        #expect(!p.contains(IPAddress("10.0.2.1")!))
        #expect(!p.contains(IPAddress("fd00::1")!))
        #expect(IPPrefix("10.0.0.0/33") == nil)
        #expect(IPPrefix("10.0.0.0/x") == nil)
        #expect(IPPrefix("0.0.0.0/0")!.contains(IPAddress("1.2.3.4")!))
        #expect(IPPrefix("fd00:1::5/64")!.description == "fd00:1::/64")
        #expect(IPPrefix("10.0.0.9")!.length == 32)
    }

    @Test func codableRoundTrip() throws {
        let p = IPPrefix("fd00:10::/64")!
        let data = try JSONEncoder().encode([p])
        #expect(try JSONDecoder().decode([IPPrefix].self, from: data) == [p])
        #expect(throws: DecodingError.self) { try JSONDecoder().decode([IPPrefix].self, from: Data(#"["nope"]"#.utf8)) }
    }

    @Test func secretsNeverPrint() {
        let s = SecretBytes([0xDE, 0xAD, 0xBE, 0xEF])
        #expect(!"\(s)".lowercased().contains("de"))
        #expect(String(reflecting: s) == "<secret 4 bytes>")
        var dumped = ""
        dump(s, to: &dumped)
        #expect(!dumped.contains("222"))  // 0xDE
        #expect(s == SecretBytes([0xDE, 0xAD, 0xBE, 0xEF]))
        #expect(s != SecretBytes([0xDE, 0xAD, 0xBE, 0xEE]))
    }
}
