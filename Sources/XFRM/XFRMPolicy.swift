import IPsecPrimitives

/// Traffic selector (`xfrm_selector`): prefixes, optional upper protocol and ports, optional ifindex.
public struct XFRMSelector: Hashable, Sendable, CustomStringConvertible {
    public var source: IPPrefix
    public var destination: IPPrefix
    /// Upper-layer protocol (0 = any).
    public var proto: UInt8
    public var sourcePort: UInt16?
    public var destinationPort: UInt16?
    public var ifindex: Int32
    public init(
        source: IPPrefix, destination: IPPrefix, proto: UInt8 = 0, sourcePort: UInt16? = nil,
        destinationPort: UInt16? = nil, ifindex: Int32 = 0
    ) {
        self.source = source
        self.destination = destination
        self.proto = proto
        self.sourcePort = sourcePort
        self.destinationPort = destinationPort
        self.ifindex = ifindex
    }
    public var description: String { "src \(source) dst \(destination)" + (proto != 0 ? " proto \(proto)" : "") }
}

/// The policy direction (`XFRM_POLICY_IN/OUT/FWD`): the agent installs OUT, IN and FWD per peer.
public enum XFRMPolicyDirection: UInt8, Sendable, Hashable {
    case `in` = 0
    case out = 1
    case fwd = 2
}

/// The policy action (`XFRM_POLICY_ALLOW/BLOCK`): block backs the drop policies that keep plaintext off the wire.
public enum XFRMPolicyAction: UInt8, Sendable, Hashable {
    case allow = 0
    case block = 1
}

/// A policy template (`xfrm_user_tmpl`): which SA the policy needs.
public struct XFRMTemplate: Hashable, Sendable {
    public var source: IPAddress?
    public var destination: IPAddress?
    public var proto: XFRMProtocol
    /// 0 matches any SA; pin it so a new SA cannot steal traffic.
    public var spi: UInt32
    public var reqid: UInt32
    public var mode: XFRMMode
    /// Optional templates (`optional 1`) let traffic without a matching SA through.
    public var optional: Bool
    public init(
        source: IPAddress? = nil, destination: IPAddress? = nil, proto: XFRMProtocol = .esp, spi: UInt32 = 0,
        reqid: UInt32 = 0, mode: XFRMMode = .tunnel, optional: Bool = false
    ) {
        self.source = source
        self.destination = destination
        self.proto = proto
        self.spi = spi
        self.reqid = reqid
        self.mode = mode
        self.optional = optional
    }
}

/// Identifies a policy: (selector, direction, mark) — what `XFRM_MSG_DELPOLICY`/`GETPOLICY` take.
public struct XFRMPolicyID: Hashable, Sendable, CustomStringConvertible {
    public var selector: XFRMSelector
    public var direction: XFRMPolicyDirection
    public var mark: XFRMMark?
    public init(selector: XFRMSelector, direction: XFRMPolicyDirection, mark: XFRMMark? = nil) {
        self.selector = selector
        self.direction = direction
        self.mark = mark
    }
    public var description: String { "policy \(selector) dir \(direction)" + (mark.map { " mark \($0)" } ?? "") }
}

/// An XFRM policy.
public struct XFRMPolicy: Hashable, Sendable, CustomStringConvertible {
    public var selector: XFRMSelector
    public var direction: XFRMPolicyDirection
    /// Lower wins; ties go to the newest.
    public var priority: UInt32
    public var action: XFRMPolicyAction
    public var mark: XFRMMark?
    public var templates: [XFRMTemplate]
    /// Kernel-assigned index; filled in by dumps, ignored on install.
    public var index: UInt32
    public init(
        selector: XFRMSelector, direction: XFRMPolicyDirection, priority: UInt32 = 0,
        action: XFRMPolicyAction = .allow, mark: XFRMMark? = nil, templates: [XFRMTemplate] = [], index: UInt32 = 0
    ) {
        self.selector = selector
        self.direction = direction
        self.priority = priority
        self.action = action
        self.mark = mark
        self.templates = templates
        self.index = index
    }
    public var id: XFRMPolicyID { XFRMPolicyID(selector: selector, direction: direction, mark: mark) }

    /// `id == other` without building `id`: compares the stored fields, direction first (no copy of the policy).
    @inlinable
    public func hasID(_ other: XFRMPolicyID) -> Bool {
        direction == other.direction && mark == other.mark && selector == other.selector
    }
    public var description: String { "\(id) prio \(priority) action \(action) tmpls \(templates.count)" }
}
