import CNetlink
import IPsecPrimitives

#if canImport(Glibc)
    import Glibc
#endif

/// Encodes XFRM requests as netlink messages (`XFRM_MSG_NEWSA`, `DELPOLICY`, …) with the kernel's own structs.
enum XFRMMessageEncoder {
    /// Flags of a change request: the kernel acknowledges each one, success or not.
    static let changeFlags = UInt16(NLM_F_REQUEST | NLM_F_ACK)
    /// The kernel's XFRM_MAX_DEPTH (include/net/xfrm.h, not in the UAPI headers).
    static let maximumTemplates = 6

    static func encode(_ request: XFRMRequest, sequence: UInt32, into builder: NetlinkMessageBuilder) throws(XFRMError)
    {
        do {
            switch request {
            case .addState(let state):
                try encodeState(state, type: XFRM_MSG_NEWSA, sequence: sequence, into: builder)
            case .updateState(let state):
                try encodeState(state, type: XFRM_MSG_UPDSA, sequence: sequence, into: builder)
            case .deleteState(let id):
                try encodeStateID(id, type: XFRM_MSG_DELSA, flags: changeFlags, sequence: sequence, into: builder)
            case .addPolicy(let policy):
                try encodePolicy(policy, type: XFRM_MSG_NEWPOLICY, sequence: sequence, into: builder)
            case .updatePolicy(let policy):
                try encodePolicy(policy, type: XFRM_MSG_UPDPOLICY, sequence: sequence, into: builder)
            case .deletePolicy(let id):
                try encodePolicyID(id, type: XFRM_MSG_DELPOLICY, flags: changeFlags, sequence: sequence, into: builder)
            }
        } catch {
            builder.abandon()
            if case .invalidRequest(_, let reason) = error {
                throw .invalidRequest(request: request.description, reason: reason)
            }
            throw error
        }
        builder.finish()
    }

    // MARK: States

    static func encodeState(
        _ state: XFRMState, type: Int, sequence: UInt32, into builder: NetlinkMessageBuilder
    ) throws(XFRMError) {
        guard state.source.family == state.destination.family else {
            throw .invalidRequest(
                request: "", reason: "source \(state.source) and destination \(state.destination) differ in family")
        }
        var info = xfrm_usersa_info()
        // Without a selector the SA carries inner packets of either family (IPv4 pods in an IPv6 tunnel, and the
        // reverse): XFRM_STATE_AF_UNSPEC keeps the kernel from giving the empty selector the SA's own family,
        // which would match only inner packets of that family (the others fail: XfrmOutPolError).
        if let selector = state.selector {
            info.sel = try xfrm_selector(selector)
        } else {
            info.flags |= UInt8(XFRM_STATE_AF_UNSPEC)
        }
        info.id.daddr = xfrm_address_t(state.destination)
        info.id.spi = state.spi.bigEndian
        info.id.proto = state.proto.rawValue
        info.saddr = xfrm_address_t(state.source)
        info.lft = .infinite
        info.reqid = state.reqid
        info.family = state.destination.family.addressFamily
        info.mode = state.mode.rawValue
        if state.esn {
            guard state.replayWindow > 0, state.replayWindow <= UInt32(XFRMA_REPLAY_ESN_MAX) else {
                throw .invalidRequest(
                    request: "",
                    reason: "ESN replay window must be 1…\(XFRMA_REPLAY_ESN_MAX), got \(state.replayWindow)")
            }
            info.flags |= UInt8(XFRM_STATE_ESN)
            info.replay_window = 0  // the window travels in XFRMA_REPLAY_ESN_VAL
        } else {
            guard state.replayWindow <= 32 else {
                throw .invalidRequest(
                    request: "",
                    reason: "replay window \(state.replayWindow) needs ESN (without it the kernel caps it at 32)")
            }
            info.replay_window = UInt8(state.replayWindow)
        }
        try builder.begin(type: UInt16(type), flags: changeFlags, sequence: sequence)
        try builder.appendHeader(info)
        try appendAlgorithm(state.algorithm, into: builder)
        if state.esn {
            var replay = xfrm_replay_state_esn()
            replay.bmp_len = (state.replayWindow + 31) / 32
            replay.replay_window = state.replayWindow
            if let sequence = state.outboundSequence {
                replay.oseq = UInt32(truncatingIfNeeded: sequence)
                replay.oseq_hi = UInt32(truncatingIfNeeded: sequence >> 32)
            }
            try builder.appendAttribute(
                type: UInt16(XFRMA_REPLAY_ESN_VAL.rawValue), replay,
                zeroTailBytes: Int(replay.bmp_len) * MemoryLayout<UInt32>.size)
        }
        if let mark = state.mark { try builder.appendAttribute(type: UInt16(XFRMA_MARK.rawValue), xfrm_mark(mark)) }
        if let output = state.outputMark {
            try builder.appendAttribute(type: UInt16(XFRMA_SET_MARK.rawValue), output.value)
            try builder.appendAttribute(type: UInt16(XFRMA_SET_MARK_MASK.rawValue), output.mask)
        }
    }

    private static func appendAlgorithm(
        _ algorithm: XFRMAlgorithm, into builder: NetlinkMessageBuilder
    ) throws(XFRMError) {
        switch algorithm {
        case .aead(let name, let key, let icvBits):
            var aead = xfrm_algo_aead()
            try copyAlgorithmName(name, into: &aead.alg_name)
            aead.alg_key_len = UInt32(key.count * 8)
            aead.alg_icv_len = UInt32(icvBits)
            try appendKeyed(type: XFRMA_ALG_AEAD, aead, key: key, into: builder)
        case .authEncrypt(let authName, let authKey, let truncationBits, let cryptName, let cryptKey):
            var auth = xfrm_algo_auth()
            try copyAlgorithmName(authName, into: &auth.alg_name)
            auth.alg_key_len = UInt32(authKey.count * 8)
            auth.alg_trunc_len = UInt32(truncationBits)
            try appendKeyed(type: XFRMA_ALG_AUTH_TRUNC, auth, key: authKey, into: builder)
            var crypt = xfrm_algo()
            try copyAlgorithmName(cryptName, into: &crypt.alg_name)
            crypt.alg_key_len = UInt32(cryptKey.count * 8)
            try appendKeyed(type: XFRMA_ALG_CRYPT, crypt, key: cryptKey, into: builder)
        }
    }

    private static func appendKeyed<T>(
        type: xfrm_attr_type_t, _ header: T, key: SecretBytes,
        into builder: NetlinkMessageBuilder
    ) throws(XFRMError) {
        try withXFRMError {
            try withUnsafeBytes(of: header) { head in
                try key.withUnsafeBytes { tail in try builder.appendAttribute(type: UInt16(type.rawValue), head, tail) }
            }
        }
    }

    private static func copyAlgorithmName<Name>(_ name: String, into field: inout Name) throws(XFRMError) {
        let utf8 = Array(name.utf8)
        let capacity = MemoryLayout<Name>.size
        guard !utf8.isEmpty, utf8.count < capacity, !utf8.contains(0) else {
            throw .invalidRequest(
                request: "", reason: "algorithm name '\(name.prefix(80))' must be 1…\(capacity - 1) bytes")
        }
        withUnsafeMutableBytes(of: &field) { raw in
            raw.initializeMemory(as: UInt8.self, repeating: 0)
            raw.copyBytes(from: utf8)
        }
    }

    static func encodeStateID(
        _ id: XFRMStateID, type: Int, flags: UInt16, sequence: UInt32,
        into builder: NetlinkMessageBuilder
    ) throws(XFRMError) {
        var header = xfrm_usersa_id()
        header.daddr = xfrm_address_t(id.destination)
        header.spi = id.spi.bigEndian
        header.family = id.destination.family.addressFamily
        header.proto = id.proto.rawValue
        try builder.begin(type: UInt16(type), flags: flags, sequence: sequence)
        try builder.appendHeader(header)
        if let mark = id.mark { try builder.appendAttribute(type: UInt16(XFRMA_MARK.rawValue), xfrm_mark(mark)) }
    }

    // MARK: Policies

    static func encodePolicy(
        _ policy: XFRMPolicy, type: Int, sequence: UInt32, into builder: NetlinkMessageBuilder
    ) throws(XFRMError) {
        var info = xfrm_userpolicy_info()
        info.sel = try xfrm_selector(policy.selector)
        info.lft = .infinite
        info.priority = policy.priority
        info.dir = policy.direction.rawValue
        info.action = policy.action.rawValue
        try builder.begin(type: UInt16(type), flags: changeFlags, sequence: sequence)
        try builder.appendHeader(info)
        if !policy.templates.isEmpty {
            guard policy.templates.count <= Int(maximumTemplates) else {
                throw .invalidRequest(
                    request: "", reason: "\(policy.templates.count) templates, the kernel allows \(maximumTemplates)")
            }
            var templates = [xfrm_user_tmpl]()
            templates.reserveCapacity(policy.templates.count)
            for template in policy.templates {
                templates.append(try xfrm_user_tmpl(template, selectorFamily: policy.selector.source.family))
            }
            try withXFRMError {
                try templates.withUnsafeBytes { raw in
                    try builder.appendAttribute(
                        type: UInt16(XFRMA_TMPL.rawValue), raw, UnsafeRawBufferPointer(start: nil, count: 0))
                }
            }
        }
        if let mark = policy.mark { try builder.appendAttribute(type: UInt16(XFRMA_MARK.rawValue), xfrm_mark(mark)) }
    }

    static func encodePolicyID(
        _ id: XFRMPolicyID, type: Int, flags: UInt16, sequence: UInt32,
        into builder: NetlinkMessageBuilder
    ) throws(XFRMError) {
        var header = xfrm_userpolicy_id()
        header.sel = try xfrm_selector(id.selector)
        header.dir = id.direction.rawValue
        try builder.begin(type: UInt16(type), flags: flags, sequence: sequence)
        try builder.appendHeader(header)
        if let mark = id.mark { try builder.appendAttribute(type: UInt16(XFRMA_MARK.rawValue), xfrm_mark(mark)) }
    }

    /// A dump or get without payload beyond what the kernel requires (dumps carry none: it would be parsed as filters).
    static func encodeDump(type: Int, sequence: UInt32, into builder: NetlinkMessageBuilder) throws(XFRMError) {
        try builder.begin(type: UInt16(type), flags: UInt16(NLM_F_REQUEST | NLM_F_DUMP), sequence: sequence)
        builder.finish()
    }
}

// MARK: Kernel struct conversions

extension IPAddress.Family {
    var addressFamily: UInt16 { UInt16(self == .v4 ? AF_INET : AF_INET6) }
}

extension xfrm_address_t {
    /// The address in network byte order (written directly: this runs once per object in 10k batches).
    init(_ address: IPAddress) {
        self.init()
        withUnsafeMutableBytes(of: &self) { raw in
            switch address {
            case .v4(let value): raw.storeBytes(of: value.bigEndian, as: UInt32.self)
            case .v6(let value): raw.storeBytes(of: value.bigEndian, as: UInt128.self)
            }
        }
    }

    func address(family: UInt16) -> IPAddress? {
        withUnsafeBytes(of: self) { raw in
            switch Int32(family) {
            case AF_INET: .v4(UInt32(bigEndian: raw.loadUnaligned(as: UInt32.self)))
            case AF_INET6: .v6(UInt128(bigEndian: raw.loadUnaligned(as: UInt128.self)))
            default: nil
            }
        }
    }

    var isZero: Bool { withUnsafeBytes(of: self) { $0.allSatisfy { $0 == 0 } } }
}

extension xfrm_lifetime_cfg {
    /// No byte, packet or time limit (iproute2's default): a zero limit would expire the object at once.
    static var infinite: xfrm_lifetime_cfg {
        var cfg = xfrm_lifetime_cfg()
        cfg.soft_byte_limit = UInt64.max
        cfg.hard_byte_limit = UInt64.max
        cfg.soft_packet_limit = UInt64.max
        cfg.hard_packet_limit = UInt64.max
        return cfg
    }
}

extension xfrm_mark {
    init(_ mark: XFRMMark) {
        self.init()
        v = mark.value
        m = mark.mask
    }
}

extension xfrm_selector {
    init(_ selector: XFRMSelector) throws(XFRMError) {
        guard selector.source.family == selector.destination.family else {
            throw .invalidRequest(request: "", reason: "selector \(selector) mixes IPv4 and IPv6")
        }
        self.init()
        daddr = xfrm_address_t(selector.destination.address)
        saddr = xfrm_address_t(selector.source.address)
        prefixlen_d = UInt8(selector.destination.length)
        prefixlen_s = UInt8(selector.source.length)
        family = selector.source.family.addressFamily
        proto = selector.proto
        if let port = selector.destinationPort {
            dport = port.bigEndian
            dport_mask = 0xFFFF
        }
        if let port = selector.sourcePort {
            sport = port.bigEndian
            sport_mask = 0xFFFF
        }
        ifindex = selector.ifindex
    }
}

extension xfrm_user_tmpl {
    init(_ template: XFRMTemplate, selectorFamily: IPAddress.Family) throws(XFRMError) {
        let family = template.destination?.family ?? template.source?.family ?? selectorFamily
        if let source = template.source, source.family != family {
            throw .invalidRequest(request: "", reason: "template source \(source) and destination differ in family")
        }
        self.init()
        if let destination = template.destination { id.daddr = xfrm_address_t(destination) }
        if let source = template.source { saddr = xfrm_address_t(source) }
        id.spi = template.spi.bigEndian
        id.proto = template.proto.rawValue
        self.family = family.addressFamily
        reqid = template.reqid
        mode = template.mode.rawValue
        optional = template.optional ? 1 : 0
        aalgos = UInt32.max
        ealgos = UInt32.max
        calgos = UInt32.max
    }
}

/// Runs `body`, whose only thrown errors are `XFRMError`s, from a context that throws `XFRMError`
/// (standard-library `withUnsafeBytes` rethrows untyped errors).
func withXFRMError<R>(_ body: () throws -> R) throws(XFRMError) -> R {
    do {
        return try body()
    } catch let error as XFRMError {
        throw error
    } catch {
        throw .malformedMessage("unexpected error \(error)")
    }
}
