import IPsecPrimitives

/// An XFRM mark and mask (`XFRMA_MARK`, `XFRMA_SET_MARK`/`XFRMA_SET_MARK_MASK`).
public struct XFRMMark: Hashable, Sendable, CustomStringConvertible {
    public var value: UInt32
    public var mask: UInt32
    public init(value: UInt32, mask: UInt32 = 0xFFFF_FFFF) {
        self.value = value
        self.mask = mask
    }
    public var description: String { "0x\(String(value, radix: 16))/0x\(String(mask, radix: 16))" }
}

/// The SA mode (`XFRM_MODE_*`); the agent installs tunnel mode.
public enum XFRMMode: UInt8, Sendable, Hashable {
    case transport = 0
    case tunnel = 1
}

/// IP protocol numbers XFRM uses for SAs and templates.
public enum XFRMProtocol: UInt8, Sendable, Hashable {
    case esp = 50
    case ah = 51
    case comp = 108
}

/// The transform of an SA. Key bytes are `SecretBytes`: never printed.
public enum XFRMAlgorithm: Hashable, Sendable {
    /// AEAD, e.g. `rfc4106(gcm(aes))` with a key that includes the 4-byte salt.
    case aead(name: String, key: SecretBytes, icvBits: Int)
    /// Authentication with truncation (e.g. `hmac(sha256)`, 128 bits) plus encryption (e.g. `cbc(aes)`).
    case authEncrypt(
        authName: String, authKey: SecretBytes, truncationBits: Int, cryptName: String, cryptKey: SecretBytes)
}

/// Identifies an SA: (destination, SPI, protocol, mark) — the kernel's lookup key.
public struct XFRMStateID: Hashable, Sendable, CustomStringConvertible {
    public var destination: IPAddress
    public var spi: UInt32
    public var proto: XFRMProtocol
    public var mark: XFRMMark?
    public init(destination: IPAddress, spi: UInt32, proto: XFRMProtocol = .esp, mark: XFRMMark? = nil) {
        self.destination = destination
        self.spi = spi
        self.proto = proto
        self.mark = mark
    }
    public var description: String {
        "dst \(destination) spi 0x\(String(spi, radix: 16))" + (mark.map { " mark \($0)" } ?? "")
    }
}

/// Lifetime counters the kernel reports for an SA (read from dumps; ignored on install).
public struct XFRMLifetimeCounters: Hashable, Sendable {
    public var bytes: UInt64
    public var packets: UInt64
    /// Seconds since the epoch when the SA was added.
    public var addTime: UInt64
    public var useTime: UInt64
    public init(bytes: UInt64 = 0, packets: UInt64 = 0, addTime: UInt64 = 0, useTime: UInt64 = 0) {
        self.bytes = bytes
        self.packets = packets
        self.addTime = addTime
        self.useTime = useTime
    }
}

/// An XFRM state (SA).
public struct XFRMState: Hashable, Sendable, CustomStringConvertible {
    public var source: IPAddress
    public var destination: IPAddress
    public var spi: UInt32
    public var proto: XFRMProtocol
    public var mode: XFRMMode
    public var reqid: UInt32
    public var mark: XFRMMark?
    /// `XFRMA_SET_MARK`: the mark the kernel puts on packets after this SA processed them.
    public var outputMark: XFRMMark?
    public var algorithm: XFRMAlgorithm
    /// Replay window in packets. With `esn` the kernel gets `XFRMA_REPLAY_ESN_VAL` (up to 4096 here).
    public var replayWindow: UInt32
    public var esn: Bool
    /// Optional traffic selector; nil means "any" of the address family.
    public var selector: XFRMSelector? {
        get { extras?.selector }
        set { extras = XFRMStateExtras.make(selector: newValue, counters: counters) }
    }
    /// Filled in by dumps and gets; not sent on install.
    public var counters: XFRMLifetimeCounters? {
        get { extras?.counters }
        set { extras = XFRMStateExtras.make(selector: selector, counters: newValue) }
    }
    /// `selector` and `counters`, out of line: the SAs an agent models never set them, and inline they would
    /// make every SA value (and every request carrying one) about twice as large.
    private var extras: XFRMStateExtras?
    /// ESN output sequence number (`oseq_hi:oseq`). On add: where the SA starts counting (a re-created SA must
    /// start past every sequence number its key already used, or GCM nonces repeat and the peer's replay
    /// window rejects it). From dumps: the last sequence number sent. Nil: 0 on add, unknown on read.
    public var outboundSequence: UInt64?

    public init(
        source: IPAddress, destination: IPAddress, spi: UInt32, proto: XFRMProtocol = .esp,
        mode: XFRMMode = .tunnel, reqid: UInt32 = 0, mark: XFRMMark? = nil, outputMark: XFRMMark? = nil,
        algorithm: XFRMAlgorithm, replayWindow: UInt32 = 1024, esn: Bool = true,
        selector: XFRMSelector? = nil, counters: XFRMLifetimeCounters? = nil, outboundSequence: UInt64? = nil
    ) {
        self.source = source
        self.destination = destination
        self.spi = spi
        self.proto = proto
        self.mode = mode
        self.reqid = reqid
        self.mark = mark
        self.outputMark = outputMark
        self.algorithm = algorithm
        self.replayWindow = replayWindow
        self.esn = esn
        self.extras = XFRMStateExtras.make(selector: selector, counters: counters)
        self.outboundSequence = outboundSequence
    }

    public var id: XFRMStateID { XFRMStateID(destination: destination, spi: spi, proto: proto, mark: mark) }

    /// `id == other` without building `id`: compares the stored fields, SPI first (no copy of the state).
    @inlinable
    public func hasID(_ other: XFRMStateID) -> Bool {
        spi == other.spi && destination == other.destination && proto == other.proto && mark == other.mark
    }

    public var description: String {
        "state src \(source) dst \(destination) spi 0x\(String(spi, radix: 16)) reqid \(reqid) mode \(mode)"
            + (mark.map { " mark \($0)" } ?? "")
    }
}

/// The rarely set fields of an `XFRMState`; compared and hashed by value.
private final class XFRMStateExtras: Hashable, Sendable {
    let selector: XFRMSelector?
    let counters: XFRMLifetimeCounters?

    private init(selector: XFRMSelector?, counters: XFRMLifetimeCounters?) {
        self.selector = selector
        self.counters = counters
    }

    /// Nil when neither is set, so equal states hold equal references-or-nil.
    static func make(selector: XFRMSelector?, counters: XFRMLifetimeCounters?) -> XFRMStateExtras? {
        selector == nil && counters == nil ? nil : XFRMStateExtras(selector: selector, counters: counters)
    }

    static func == (a: XFRMStateExtras, b: XFRMStateExtras) -> Bool {
        a.selector == b.selector && a.counters == b.counters
    }

    func hash(into hasher: inout Hasher) {
        hasher.combine(selector)
        hasher.combine(counters)
    }
}
