import Glibc
import CNetlink
import IPsecPrimitives
import Testing
@testable import XFRM

/// Message bytes and round trips through the encoder and decoder; no kernel needed.
@Suite struct XFRMEncodingTests {
    /// Encodes one request and hands its single message to `body`.
    private func withMessage<R>(_ request: XFRMRequest, sequence: UInt32 = 7,
                                _ body: (UnsafePointer<nlmsghdr>) throws -> R) throws -> R {
        let builder = NetlinkMessageBuilder(capacity: 64 * 1024)
        try XFRMMessageEncoder.encode(request, sequence: sequence, into: builder)
        #expect(builder.messageCount == 1)
        return try body(UnsafeRawPointer(builder.bytes.baseAddress!).assumingMemoryBound(to: nlmsghdr.self))
    }

    private func payloadBytes(_ message: UnsafePointer<nlmsghdr>) -> [UInt8] {
        Array(UnsafeRawBufferPointer(start: mnl_nlmsg_get_payload(message), count: Int(mnl_nlmsg_get_payload_len(message))))
    }

    private func attribute(_ message: UnsafePointer<nlmsghdr>, headerSize: Int, _ type: xfrm_attr_type_t) throws -> [UInt8]? {
        let table = try XFRMMessageDecoder.attributeTable(of: message, after: headerSize)
        let found = withUnsafePointer(to: table) { cnl_attr_get($0, UInt16(type.rawValue)) }
        return found.map { Array(UnsafeRawBufferPointer(start: mnl_attr_get_payload($0), count: Int(mnl_attr_get_payload_len($0)))) }
    }

    @Test func stateHeaderCarriesTypeFlagsSequenceAndNetworkOrderSPI() throws {
        try withMessage(.addState(XFRMFixtures.aeadState(spi: 0x0102_0304)), sequence: 42) { message in
            #expect(message.pointee.nlmsg_type == UInt16(XFRM_MSG_NEWSA))
            #expect(message.pointee.nlmsg_flags == UInt16(NLM_F_REQUEST | NLM_F_ACK))
            #expect(message.pointee.nlmsg_seq == 42)
            let payload = payloadBytes(message)
            let spiOffset = MemoryLayout<xfrm_usersa_info>.offset(of: \.id)! + MemoryLayout<xfrm_id>.offset(of: \.spi)!
            #expect(Array(payload[spiOffset..<spiOffset + 4]) == [0x01, 0x02, 0x03, 0x04])
            let daddrOffset = MemoryLayout<xfrm_usersa_info>.offset(of: \.id)!
            #expect(Array(payload[daddrOffset..<daddrOffset + 4]) == [192, 168, 10, 2])
            let info: xfrm_usersa_info = try XFRMMessageDecoder.header(of: message)
            #expect(info.family == UInt16(AF_INET))
            #expect(info.mode == 1)
            #expect(info.flags & UInt8(XFRM_STATE_ESN) != 0)
            #expect(info.flags & UInt8(XFRM_STATE_AF_UNSPEC) != 0, "no selector: inner packets of either family")
            #expect(info.sel.family == 0)
            #expect(info.replay_window == 0, "with ESN the window travels in XFRMA_REPLAY_ESN_VAL")
            #expect(info.lft.hard_byte_limit == UInt64.max && info.lft.hard_packet_limit == UInt64.max)
        }
    }

    @Test func esnAttributeCarriesTheWindowAndBitmap() throws {
        try withMessage(.addState(XFRMFixtures.aeadState())) { message in
            let bytes = try #require(try attribute(message, headerSize: MemoryLayout<xfrm_usersa_info>.size, XFRMA_REPLAY_ESN_VAL))
            #expect(bytes.count == MemoryLayout<xfrm_replay_state_esn>.size + 1024 / 8)
            let replay = bytes.withUnsafeBytes { $0.loadUnaligned(as: xfrm_replay_state_esn.self) }
            #expect(replay.replay_window == 1024)
            #expect(replay.bmp_len == 32)
        }
    }

    @Test func aeadAttributeCarriesNameKeyLengthIcvAndKey() throws {
        try withMessage(.addState(XFRMFixtures.aeadState())) { message in
            let bytes = try #require(try attribute(message, headerSize: MemoryLayout<xfrm_usersa_info>.size, XFRMA_ALG_AEAD))
            let header = MemoryLayout<xfrm_algo_aead>.size
            #expect(bytes.count == header + 20)
            #expect(String(decoding: bytes.prefix { $0 != 0 }, as: UTF8.self) == "rfc4106(gcm(aes))")
            let aead = bytes.withUnsafeBytes { $0.loadUnaligned(as: xfrm_algo_aead.self) }
            #expect(aead.alg_key_len == 160)
            #expect(aead.alg_icv_len == 128)
            #expect(Array(bytes[header...]) == XFRMFixtures.aeadKey.revealed)
            #expect(try attribute(message, headerSize: MemoryLayout<xfrm_usersa_info>.size, XFRMA_ALG_CRYPT) == nil)
        }
    }

    @Test func marksAreEncoded() throws {
        try withMessage(.addState(XFRMFixtures.aeadState())) { message in
            let size = MemoryLayout<xfrm_usersa_info>.size
            let mark = try #require(try attribute(message, headerSize: size, XFRMA_MARK))
            #expect(mark.withUnsafeBytes { $0.loadUnaligned(as: xfrm_mark.self) }.v == 0xD00)
            #expect(mark.withUnsafeBytes { $0.loadUnaligned(as: xfrm_mark.self) }.m == 0xF00)
            let output = try #require(try attribute(message, headerSize: size, XFRMA_SET_MARK))
            #expect(output.withUnsafeBytes { $0.loadUnaligned(as: UInt32.self) } == 0xE00)
            let mask = try #require(try attribute(message, headerSize: size, XFRMA_SET_MARK_MASK))
            #expect(mask.withUnsafeBytes { $0.loadUnaligned(as: UInt32.self) } == 0xF00)
        }
    }

    @Test(arguments: [
        XFRMFixtures.aeadState(),
        XFRMFixtures.aeadState(source: "fd00::1", destination: "fd00::2", spi: 0xFFFF_FFFE, mark: nil),
        XFRMFixtures.cbcState(source: "10.0.0.1", destination: "10.0.0.2", spi: 9),
        { var s = XFRMFixtures.aeadState(); s.outboundSequence = 0x1_0000_0005; return s }(),
    ])
    func stateRoundTrips(_ state: XFRMState) throws {
        var expected = state
        expected.counters = XFRMLifetimeCounters()
        // ESN SAs carry their output sequence (oseq_hi:oseq) both ways; 0 when none was set.
        if state.esn { expected.outboundSequence = state.outboundSequence ?? 0 }
        let decoded = try withMessage(.addState(state)) { try XFRMMessageDecoder.state(from: $0) }
        #expect(decoded == expected)
        // SecretBytes' equality is by content but its hash ignores it; compare keys explicitly.
        #expect(decoded.algorithm == state.algorithm)
    }

    @Test func policyRoundTripsWithSelectorPortsMarkAndTemplates() throws {
        let policy = XFRMPolicy(
            selector: XFRMSelector(source: XFRMFixtures.prefix("fd00:1::/64"), destination: XFRMFixtures.prefix("fd00:2::5/128"),
                                   proto: 6, sourcePort: 1234, destinationPort: 443),
            direction: .fwd, priority: 77, action: .allow, mark: XFRMMark(value: 0xE00, mask: 0xF00),
            templates: [
                XFRMTemplate(source: XFRMFixtures.address("fd00::1"), destination: XFRMFixtures.address("fd00::2"), spi: 3, reqid: 9),
                XFRMTemplate(proto: .esp, spi: 0, reqid: 0, mode: .transport, optional: true),
            ])
        let decoded = try withMessage(.updatePolicy(policy)) { message in
            #expect(message.pointee.nlmsg_type == UInt16(XFRM_MSG_UPDPOLICY))
            let info: xfrm_userpolicy_info = try XFRMMessageDecoder.header(of: message)
            #expect(info.sel.dport == UInt16(443).bigEndian && info.sel.dport_mask == 0xFFFF)
            #expect(info.dir == 2 && info.priority == 77)
            return try XFRMMessageDecoder.policy(from: message)
        }
        #expect(decoded == policy)
    }

    @Test func policyIDMessageCarriesDirectionAndMark() throws {
        let id = XFRMFixtures.outPolicy(3).id
        try withMessage(.deletePolicy(id)) { message in
            #expect(message.pointee.nlmsg_type == UInt16(XFRM_MSG_DELPOLICY))
            let header: xfrm_userpolicy_id = try XFRMMessageDecoder.header(of: message)
            #expect(header.dir == 1)
            #expect(header.sel.prefixlen_d == 32)
            #expect(try attribute(message, headerSize: MemoryLayout<xfrm_userpolicy_id>.size, XFRMA_MARK) != nil)
        }
    }

    @Test func dumpRequestCarriesNoPayload() throws {
        let builder = NetlinkMessageBuilder(capacity: 256)
        try XFRMMessageEncoder.encodeDump(type: XFRM_MSG_GETPOLICY, sequence: 1, into: builder)
        #expect(builder.bytes.count == Int(cnl_nlmsg_header_length()))
        let header = builder.bytes.loadUnaligned(as: nlmsghdr.self)
        #expect(header.nlmsg_flags & UInt16(NLM_F_DUMP) == UInt16(NLM_F_DUMP))
    }

    @Test func mixedFamiliesAreRejectedNamingTheRequest() throws {
        let state = XFRMFixtures.aeadState(source: "10.0.0.1", destination: "fd00::1")
        let builder = NetlinkMessageBuilder(capacity: 4096)
        #expect(throws: XFRMError.self) { try XFRMMessageEncoder.encode(.addState(state), sequence: 1, into: builder) }
        do {
            try XFRMMessageEncoder.encode(.addState(state), sequence: 1, into: builder)
        } catch {
            guard case .invalidRequest(let request, let reason) = error else { Issue.record("wrong error \(error)"); return }
            #expect(request.contains("spi 0x1234"))
            #expect(reason.contains("family"))
        }
        #expect(builder.messageCount == 0 && builder.length == 0)
    }

    @Test func largeReplayWindowWithoutESNIsRejected() throws {
        var state = XFRMFixtures.aeadState(esn: false)
        state.replayWindow = 1024
        let builder = NetlinkMessageBuilder(capacity: 4096)
        #expect(throws: XFRMError.self) { try XFRMMessageEncoder.encode(.addState(state), sequence: 1, into: builder) }
    }

    @Test func keyBytesNeverAppearInDescriptions() throws {
        let state = XFRMFixtures.aeadState()
        let request = XFRMRequest.addState(state)
        let error = XFRMError(request: request.description, netlinkError: -EEXIST, kernelMessage: nil)
        let hexKey = XFRMFixtures.aeadKey.revealed.map { String($0, radix: 16) }.joined()
        for text in [request.description, "\(state)", String(describing: state.algorithm), error.description, "\(error)"] {
            #expect(!text.lowercased().contains(hexKey))

        }
        #expect(error.description.contains("EEXIST"))
        #expect(String(describing: state.algorithm).contains("<secret 20 bytes>"))
    }

    @Test func extendedAckTextIsReadFromCappedError() throws {
        // An NLMSG_ERROR as the kernel sends it with NETLINK_CAP_ACK + NETLINK_EXT_ACK.
        let builder = NetlinkMessageBuilder(capacity: 1024)
        try builder.begin(type: UInt16(NLMSG_ERROR), flags: UInt16(NLM_F_CAPPED | NLM_F_ACK_TLVS), sequence: 5)
        var error = nlmsgerr()
        error.error = -EPROTONOSUPPORT
        error.msg.nlmsg_seq = 5
        try builder.appendHeader(error)
        let text = Array("Requested type not found".utf8) + [0]
        try text.withUnsafeBytes { try builder.appendAttribute(type: UInt16(NLMSGERR_ATTR_MSG.rawValue), $0, UnsafeRawBufferPointer(start: nil, count: 0)) }
        builder.finish()
        let message = UnsafeRawPointer(builder.bytes.baseAddress!).assumingMemoryBound(to: nlmsghdr.self)
        #expect(cnl_error_code(message) == -EPROTONOSUPPORT)
        #expect(cnl_ext_ack_message(message).map { String(cString: $0) } == "Requested type not found")
        let mapped = XFRMError(request: "add x", netlinkError: cnl_error_code(message), kernelMessage: "Requested type not found")
        #expect(mapped.description.contains("EPROTONOSUPPORT") && mapped.description.contains("Requested type not found"))
    }

    @Test func errnoValuesMapToTypedCases() {
        #expect(XFRMError(request: "r", netlinkError: -EEXIST, kernelMessage: nil) == .alreadyExists(request: "r", kernelMessage: nil))
        #expect(XFRMError(request: "r", netlinkError: -ENOENT, kernelMessage: nil) == .notFound(request: "r", kernelMessage: nil))
        #expect(XFRMError(request: "r", netlinkError: -ESRCH, kernelMessage: nil) == .notFound(request: "r", kernelMessage: nil))
        #expect(XFRMError(request: "r", netlinkError: -EINVAL, kernelMessage: "x").errno == EINVAL)
    }
}
