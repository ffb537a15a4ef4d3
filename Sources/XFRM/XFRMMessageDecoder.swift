import CNetlink
import IPsecPrimitives

#if canImport(Glibc)
    import Glibc
#endif

/// Decodes the kernel's XFRM messages (dump entries, get replies, notifications) into value types.
enum XFRMMessageDecoder {
    /// An `XFRM_MSG_NEWSA`/`UPDSA` message: `xfrm_usersa_info` followed by attributes.
    static func state(from message: UnsafePointer<nlmsghdr>) throws(XFRMError) -> XFRMState {
        let info: xfrm_usersa_info = try header(of: message)
        let attributes = try attributeTable(of: message, after: MemoryLayout<xfrm_usersa_info>.size)
        return try state(info: info, attributes: attributes)
    }

    /// An `XFRM_MSG_DELSA` notification: `xfrm_usersa_id`, then `XFRMA_SA` holding the `xfrm_usersa_info`,
    /// then the SA's other attributes at top level.
    static func deletedState(from message: UnsafePointer<nlmsghdr>) throws(XFRMError) -> XFRMState {
        let attributes = try attributeTable(of: message, after: MemoryLayout<xfrm_usersa_id>.size)
        let info: xfrm_usersa_info = try payload(of: attributes, XFRMA_SA, "XFRMA_SA")
        return try state(info: info, attributes: attributes)
    }

    /// An `XFRM_MSG_EXPIRE` notification: `xfrm_user_expire` (the SA's info and the hard flag).
    static func expiredState(from message: UnsafePointer<nlmsghdr>) throws(XFRMError) -> (XFRMStateID, hard: Bool) {
        let expire: xfrm_user_expire = try header(of: message)
        let attributes = try attributeTable(of: message, after: MemoryLayout<xfrm_user_expire>.size)
        let info = expire.state
        guard let destination = info.id.daddr.address(family: info.family) else {
            throw .malformedMessage("expire notification with address family \(info.family)")
        }
        let id = XFRMStateID(
            destination: destination, spi: UInt32(bigEndian: info.id.spi),
            proto: try proto(info.id.proto), mark: try mark(attributes))
        return (id, expire.hard != 0)
    }

    static func state(info: xfrm_usersa_info, attributes: cnl_attr_table) throws(XFRMError) -> XFRMState {
        guard let destination = info.id.daddr.address(family: info.family),
            let source = info.saddr.address(family: info.family)
        else {
            throw .malformedMessage("SA with unknown address family \(info.family)")
        }
        let spi = UInt32(bigEndian: info.id.spi)
        let what = "SA dst \(destination) spi 0x\(String(spi, radix: 16))"
        guard let mode = XFRMMode(rawValue: info.mode) else {
            throw .malformedMessage("\(what): unsupported mode \(info.mode) (only transport and tunnel)")
        }
        let esn = info.flags & UInt8(XFRM_STATE_ESN) != 0
        var replayWindow = UInt32(info.replay_window)
        var outboundSequence: UInt64?
        if let replay: xfrm_replay_state_esn = try optionalPayload(
            of: attributes, XFRMA_REPLAY_ESN_VAL, "XFRMA_REPLAY_ESN_VAL")
        {
            replayWindow = replay.replay_window
            outboundSequence = UInt64(replay.oseq_hi) << 32 | UInt64(replay.oseq)
        }
        var outputMark: XFRMMark?
        if let value: UInt32 = try optionalPayload(of: attributes, XFRMA_SET_MARK, "XFRMA_SET_MARK") {
            let mask: UInt32 =
                try optionalPayload(of: attributes, XFRMA_SET_MARK_MASK, "XFRMA_SET_MARK_MASK") ?? UInt32.max
            outputMark = XFRMMark(value: value, mask: mask)
        }
        let counters = XFRMLifetimeCounters(
            bytes: info.curlft.bytes, packets: info.curlft.packets,
            addTime: info.curlft.add_time, useTime: info.curlft.use_time)
        return XFRMState(
            source: source, destination: destination, spi: spi, proto: try proto(info.id.proto), mode: mode,
            reqid: info.reqid, mark: try mark(attributes), outputMark: outputMark,
            algorithm: try algorithm(attributes, what: what), replayWindow: replayWindow, esn: esn,
            selector: selectorIfAny(info.sel), counters: counters, outboundSequence: outboundSequence)
    }

    private static func algorithm(_ attributes: cnl_attr_table, what: String) throws(XFRMError) -> XFRMAlgorithm {
        if let (aead, key) = try keyed(attributes, XFRMA_ALG_AEAD, as: xfrm_algo_aead.self, keyBits: \.alg_key_len) {
            return .aead(name: name(aead.alg_name), key: key, icvBits: Int(aead.alg_icv_len))
        }
        if let (auth, authKey) = try keyed(
            attributes, XFRMA_ALG_AUTH_TRUNC, as: xfrm_algo_auth.self, keyBits: \.alg_key_len),
            let (crypt, cryptKey) = try keyed(attributes, XFRMA_ALG_CRYPT, as: xfrm_algo.self, keyBits: \.alg_key_len)
        {
            return .authEncrypt(
                authName: name(auth.alg_name), authKey: authKey, truncationBits: Int(auth.alg_trunc_len),
                cryptName: name(crypt.alg_name), cryptKey: cryptKey)
        }
        throw .malformedMessage(
            "\(what): neither XFRMA_ALG_AEAD nor XFRMA_ALG_AUTH_TRUNC with XFRMA_ALG_CRYPT (unsupported transform)")
    }

    /// An algorithm attribute: the fixed struct, then key bytes (the struct's key length is in bits).
    private static func keyed<T>(
        _ attributes: cnl_attr_table, _ type: xfrm_attr_type_t, as: T.Type,
        keyBits: KeyPath<T, UInt32>
    ) throws(XFRMError) -> (T, SecretBytes)? {
        guard let attribute = attribute(attributes, type) else { return nil }
        let length = Int(mnl_attr_get_payload_len(attribute))
        let size = MemoryLayout<T>.size
        guard length >= size else {
            throw .malformedMessage("attribute \(type.rawValue) has \(length) bytes, needs \(size)")
        }
        let raw = UnsafeRawPointer(mnl_attr_get_payload(attribute)!)
        let value = raw.loadUnaligned(as: T.self)
        let keyBytes = (Int(value[keyPath: keyBits]) + 7) / 8
        guard size + keyBytes <= length else {
            throw .malformedMessage(
                "attribute \(type.rawValue): key of \(keyBytes) bytes overruns \(length)-byte payload")
        }
        return (value, SecretBytes(UnsafeRawBufferPointer(start: raw + size, count: keyBytes)))
    }

    private static func name<Tuple>(_ field: Tuple) -> String {
        withUnsafeBytes(of: field) { raw in String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self) }
    }

    // MARK: Policies

    /// An `XFRM_MSG_NEWPOLICY`/`UPDPOLICY` message: `xfrm_userpolicy_info` followed by attributes.
    static func policy(from message: UnsafePointer<nlmsghdr>) throws(XFRMError) -> XFRMPolicy {
        let info: xfrm_userpolicy_info = try header(of: message)
        let attributes = try attributeTable(of: message, after: MemoryLayout<xfrm_userpolicy_info>.size)
        return try policy(info: info, attributes: attributes)
    }

    /// An `XFRM_MSG_DELPOLICY` notification: `xfrm_userpolicy_id`, then `XFRMA_POLICY` with the info.
    static func deletedPolicy(from message: UnsafePointer<nlmsghdr>) throws(XFRMError) -> XFRMPolicy {
        let attributes = try attributeTable(of: message, after: MemoryLayout<xfrm_userpolicy_id>.size)
        let info: xfrm_userpolicy_info = try payload(of: attributes, XFRMA_POLICY, "XFRMA_POLICY")
        return try policy(info: info, attributes: attributes)
    }

    /// An `XFRM_MSG_POLEXPIRE` notification.
    static func expiredPolicy(from message: UnsafePointer<nlmsghdr>) throws(XFRMError) -> (XFRMPolicyID, hard: Bool) {
        let expire: xfrm_user_polexpire = try header(of: message)
        let attributes = try attributeTable(of: message, after: MemoryLayout<xfrm_user_polexpire>.size)
        return (try policy(info: expire.pol, attributes: attributes).id, expire.hard != 0)
    }

    static func policy(info: xfrm_userpolicy_info, attributes: cnl_attr_table) throws(XFRMError) -> XFRMPolicy {
        guard let selector = selectorIfAny(info.sel, keepEmpty: true) else {
            throw .malformedMessage("policy index \(info.index) with unknown selector family \(info.sel.family)")
        }
        guard let direction = XFRMPolicyDirection(rawValue: info.dir) else {
            throw .malformedMessage("policy index \(info.index) with direction \(info.dir) (socket policy?)")
        }
        guard let action = XFRMPolicyAction(rawValue: info.action) else {
            throw .malformedMessage("policy index \(info.index) with action \(info.action)")
        }
        var templates: [XFRMTemplate] = []
        if let attribute = attribute(attributes, XFRMA_TMPL) {
            let length = Int(mnl_attr_get_payload_len(attribute))
            let size = MemoryLayout<xfrm_user_tmpl>.size
            guard length % size == 0 else {
                throw .malformedMessage("XFRMA_TMPL of \(length) bytes is not a multiple of \(size)")
            }
            let raw = UnsafeRawPointer(mnl_attr_get_payload(attribute)!)
            for offset in stride(from: 0, to: length, by: size) {
                templates.append(try template(raw.loadUnaligned(fromByteOffset: offset, as: xfrm_user_tmpl.self)))
            }
        }
        return XFRMPolicy(
            selector: selector, direction: direction, priority: info.priority, action: action,
            mark: try mark(attributes), templates: templates, index: info.index)
    }

    private static func template(_ raw: xfrm_user_tmpl) throws(XFRMError) -> XFRMTemplate {
        guard let mode = XFRMMode(rawValue: raw.mode) else {
            throw .malformedMessage("template with unsupported mode \(raw.mode)")
        }
        return XFRMTemplate(
            source: raw.saddr.isZero ? nil : raw.saddr.address(family: raw.family),
            destination: raw.id.daddr.isZero ? nil : raw.id.daddr.address(family: raw.family),
            proto: try proto(raw.id.proto), spi: UInt32(bigEndian: raw.id.spi), reqid: raw.reqid, mode: mode,
            optional: raw.optional != 0)
    }

    // MARK: What the value types can represent

    /// False for an SA the value types cannot represent: not ESP, mode other than transport/tunnel (BEET …),
    /// or a transform other than AEAD or auth-trunc + crypt. Dumps leave such (foreign) SAs out.
    static func isRepresentableState(_ message: UnsafePointer<nlmsghdr>) throws(XFRMError) -> Bool {
        let info: xfrm_usersa_info = try header(of: message)
        guard info.id.proto == XFRMProtocol.esp.rawValue, XFRMMode(rawValue: info.mode) != nil else { return false }
        let attributes = try attributeTable(of: message, after: MemoryLayout<xfrm_usersa_info>.size)
        return attribute(attributes, XFRMA_ALG_AEAD) != nil
            || (attribute(attributes, XFRMA_ALG_AUTH_TRUNC) != nil && attribute(attributes, XFRMA_ALG_CRYPT) != nil)
    }

    /// False for a policy the value types cannot represent: a socket policy (direction beyond fwd), an
    /// unknown action, or a template with another protocol or mode. Dumps leave such policies out.
    static func isRepresentablePolicy(_ message: UnsafePointer<nlmsghdr>) throws(XFRMError) -> Bool {
        let info: xfrm_userpolicy_info = try header(of: message)
        guard XFRMPolicyDirection(rawValue: info.dir) != nil, XFRMPolicyAction(rawValue: info.action) != nil,
            Int32(info.sel.family) == AF_INET || Int32(info.sel.family) == AF_INET6
        else { return false }
        let attributes = try attributeTable(of: message, after: MemoryLayout<xfrm_userpolicy_info>.size)
        guard let templates = attribute(attributes, XFRMA_TMPL) else { return true }
        let length = Int(mnl_attr_get_payload_len(templates))
        let size = MemoryLayout<xfrm_user_tmpl>.size
        let raw = UnsafeRawPointer(mnl_attr_get_payload(templates)!)
        for offset in stride(from: 0, to: length - length % size, by: size) {
            let template = raw.loadUnaligned(fromByteOffset: offset, as: xfrm_user_tmpl.self)
            guard XFRMMode(rawValue: template.mode) != nil, XFRMProtocol(rawValue: template.id.proto) != nil else {
                return false
            }
        }
        return true
    }

    // MARK: Shared pieces

    /// A selector; nil for the kernel's "any" (`AF_UNSPEC` and zero prefixes) unless `keepEmpty`.
    static func selectorIfAny(_ raw: xfrm_selector, keepEmpty: Bool = false) -> XFRMSelector? {
        guard let destination = raw.daddr.address(family: raw.family),
            let source = raw.saddr.address(family: raw.family),
            let destinationPrefix = IPPrefix(address: destination, length: Int(raw.prefixlen_d)),
            let sourcePrefix = IPPrefix(address: source, length: Int(raw.prefixlen_s))
        else { return nil }
        if !keepEmpty, raw.prefixlen_d == 0, raw.prefixlen_s == 0, raw.proto == 0, raw.ifindex == 0 { return nil }
        return XFRMSelector(
            source: sourcePrefix, destination: destinationPrefix, proto: raw.proto,
            sourcePort: raw.sport_mask != 0 ? UInt16(bigEndian: raw.sport) : nil,
            destinationPort: raw.dport_mask != 0 ? UInt16(bigEndian: raw.dport) : nil,
            ifindex: raw.ifindex)
    }

    private static func proto(_ value: UInt8) throws(XFRMError) -> XFRMProtocol {
        guard let proto = XFRMProtocol(rawValue: value) else {
            throw .malformedMessage("unsupported IPsec protocol \(value)")
        }
        return proto
    }

    private static func mark(_ attributes: cnl_attr_table) throws(XFRMError) -> XFRMMark? {
        guard let raw: xfrm_mark = try optionalPayload(of: attributes, XFRMA_MARK, "XFRMA_MARK") else { return nil }
        return XFRMMark(value: raw.v, mask: raw.m)
    }

    static func header<T>(of message: UnsafePointer<nlmsghdr>) throws(XFRMError) -> T {
        let length = Int(mnl_nlmsg_get_payload_len(message))
        guard length >= MemoryLayout<T>.size else {
            throw .malformedMessage(
                "message type \(message.pointee.nlmsg_type) has \(length) payload bytes, needs \(MemoryLayout<T>.size) for \(T.self)"
            )
        }
        return UnsafeRawPointer(mnl_nlmsg_get_payload(message)!).loadUnaligned(as: T.self)
    }

    static func attributeTable(
        of message: UnsafePointer<nlmsghdr>, after headerSize: Int
    ) throws(XFRMError) -> cnl_attr_table {
        var table = cnl_attr_table()
        guard cnl_attr_index(message, cnl_nlmsg_align(headerSize), &table) == 0 else {
            throw .malformedMessage("message type \(message.pointee.nlmsg_type): attributes overrun the message")
        }
        return table
    }

    private static func attribute(_ table: cnl_attr_table, _ type: xfrm_attr_type_t) -> UnsafePointer<nlattr>? {
        withUnsafePointer(to: table) { cnl_attr_get($0, UInt16(type.rawValue)) }
    }

    private static func optionalPayload<T>(
        of table: cnl_attr_table, _ type: xfrm_attr_type_t, _ name: String
    ) throws(XFRMError) -> T? {
        guard let attribute = attribute(table, type) else { return nil }
        let length = Int(mnl_attr_get_payload_len(attribute))
        guard length >= MemoryLayout<T>.size else {
            throw .malformedMessage("\(name) has \(length) bytes, needs \(MemoryLayout<T>.size)")
        }
        return UnsafeRawPointer(mnl_attr_get_payload(attribute)!).loadUnaligned(as: T.self)
    }

    private static func payload<T>(
        of table: cnl_attr_table, _ type: xfrm_attr_type_t, _ name: String
    ) throws(XFRMError) -> T {
        guard let value: T = try optionalPayload(of: table, type, name) else {
            throw .malformedMessage("\(name) missing")
        }
        return value
    }
}
