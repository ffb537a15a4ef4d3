import IPsecPrimitives
@testable import XFRM

/// Objects used across the XFRM tests.
enum XFRMFixtures {
    static func address(_ text: String) -> IPAddress { IPAddress(text)! }
    static func prefix(_ text: String) -> IPPrefix { IPPrefix(text)! }

    /// A recognisable 20-byte AEAD key (16-byte AES key + 4-byte salt).
    static let aeadKey = SecretBytes((0..<20).map { UInt8(0xA0 + $0) })

    static func aeadState(source: String = "192.168.10.1", destination: String = "192.168.10.2", spi: UInt32 = 0x1234,
                          mark: XFRMMark? = XFRMMark(value: 0xD00, mask: 0xF00), esn: Bool = true) -> XFRMState {
        XFRMState(source: address(source), destination: address(destination), spi: spi, mode: .tunnel, reqid: 1,
                  mark: mark, outputMark: XFRMMark(value: 0xE00, mask: 0xF00),
                  algorithm: .aead(name: "rfc4106(gcm(aes))", key: aeadKey, icvBits: 128),
                  replayWindow: esn ? 1024 : 32, esn: esn)
    }

    static func cbcState(source: String, destination: String, spi: UInt32) -> XFRMState {
        XFRMState(source: address(source), destination: address(destination), spi: spi, mode: .tunnel, reqid: 2,
                  algorithm: .authEncrypt(authName: "hmac(sha256)", authKey: SecretBytes((0..<32).map { UInt8($0) }),
                                          truncationBits: 128, cryptName: "cbc(aes)",
                                          cryptKey: SecretBytes((0..<16).map { UInt8(0x40 + $0) })),
                  replayWindow: 1024, esn: true)
    }

    /// The `index`th of many distinct OUT policies, shaped like the agent's: host selectors, a mark, a pinned template.
    static func outPolicy(_ index: Int, priority: UInt32 = 100) -> XFRMPolicy {
        let a = UInt32(index >> 8 & 0xFF), b = UInt32(index & 0xFF)
        let source = IPPrefix(host: .v4(0x0A00_0000 | a << 8 | b))
        let destination = IPPrefix(host: .v4(0x0AC8_0000 | a << 8 | b))
        let spi = UInt32(index % 15 + 1)
        return XFRMPolicy(
            selector: XFRMSelector(source: source, destination: destination), direction: .out, priority: priority,
            mark: XFRMMark(value: 0xE00 | spi << 12, mask: 0xFFFF_FF00),
            templates: [XFRMTemplate(source: address("192.168.0.1"), destination: address("192.168.0.2"), spi: spi, reqid: 1)])
    }

    static func withoutIndex(_ policy: XFRMPolicy) -> XFRMPolicy {
        var copy = policy
        copy.index = 0
        return copy
    }
}
