import CNetlink
import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

/// A client of the kernel's XFRM database over netlink: batched changes, dumps and gets of SAs and policies.
///
/// The API is synchronous: each call makes short blocking netlink system calls (the kernel handles XFRM
/// requests synchronously, so acknowledgements are queued by the time `sendto` returns). Async callers should
/// call it from a dedicated thread or executor (e.g. `NIOThreadPool`), not from the cooperative pool.
/// Calls are serialized by a mutex around the one socket; the client is safe to share.
public final class XFRMClient: Sendable {
    /// Messages are sent in chunks of about this many bytes, one `sendto` each.
    public static let batchBytes = 256 * 1024
    /// Receive buffer forced on the socket: room for a chunk's acknowledgements (with their skb overhead).
    static let receiveBufferBytes: Int32 = 32 * 1024 * 1024
    static let sendBufferBytes: Int32 = 4 * 1024 * 1024
    /// Room kept free in a batch for one more message (the largest is a state with keys, well under 4 KB).
    static let messageHeadroom = 16 * 1024
    private static let dumpAttempts = 5

    private let connection: Mutex<NetlinkSocket>

    /// Opens a NETLINK_XFRM socket, inside the network namespace at `networkNamespacePath` (e.g.
    /// `/var/run/netns/NAME`) when given; the calling thread returns to its own namespace before this returns.
    public init(networkNamespacePath: String? = nil) throws(XFRMError) {
        connection = Mutex(
            try NetlinkSocket(
                networkNamespacePath: networkNamespacePath, receiveBufferBytes: Self.receiveBufferBytes,
                sendBufferBytes: Self.sendBufferBytes, receiveTimeoutSeconds: 60))
    }

    // MARK: Batches

    /// Applies `requests` in order, many per `sendto`, and returns one result per request (same order).
    /// A failing request does not stop the others.
    public func perform(_ requests: [XFRMRequest]) -> [Result<Void, XFRMError>] {
        guard !requests.isEmpty else { return [] }
        var results = [Result<Void, XFRMError>?](repeating: nil, count: requests.count)
        connection.withLock { socket in
            let builder = socket.batchBuilder  // one buffer per socket, reused: no allocation or page faults per batch
            let firstSequence = socket.reserveSequenceNumbers(requests.count)
            var chunkStart = 0
            for (index, request) in requests.enumerated() {
                if builder.length + Self.messageHeadroom > builder.capacity {
                    Self.flush(
                        builder, requests: requests, range: chunkStart..<index, firstSequence: firstSequence,
                        socket: socket, results: &results)
                    chunkStart = index
                }
                do throws(XFRMError) {
                    try XFRMMessageEncoder.encode(request, sequence: firstSequence &+ UInt32(index), into: builder)
                } catch {
                    results[index] = .failure(error)
                }
            }
            Self.flush(
                builder, requests: requests, range: chunkStart..<requests.count, firstSequence: firstSequence,
                socket: socket, results: &results)
        }
        return results.enumerated().map { index, result in
            result ?? .failure(.noAcknowledgement(request: requests[index].description))
        }
    }

    /// Sends the messages of `range` and collects their acknowledgements by sequence number.
    private static func flush(
        _ builder: NetlinkMessageBuilder, requests: [XFRMRequest], range: Range<Int>,
        firstSequence: UInt32, socket: NetlinkSocket, results: inout [Result<Void, XFRMError>?]
    ) {
        defer { builder.reset() }
        guard builder.messageCount > 0 else { return }
        var outstanding = builder.messageCount
        do {
            try socket.send(builder.bytes)
        } catch {
            for index in range where results[index] == nil { results[index] = .failure(error) }
            return
        }
        do {
            while outstanding > 0 {
                try socket.receive { message throws(XFRMError) in
                    guard message.pointee.nlmsg_type == UInt16(NLMSG_ERROR) else { return }
                    let index = Int(message.pointee.nlmsg_seq &- firstSequence)
                    guard range.contains(index), results[index] == nil else { return }
                    let code = cnl_error_code(message)
                    if code == 0 {
                        results[index] = .success(())
                    } else {
                        results[index] = .failure(
                            XFRMError(
                                request: requests[index].description, netlinkError: code,
                                kernelMessage: cnl_ext_ack_message(message).map { String(cString: $0) }))
                    }
                    outstanding -= 1
                }
            }
        } catch {
            // Acknowledgements were lost (ENOBUFS) or none came: the remaining outcomes are unknown.
            for index in range where results[index] == nil {
                results[index] = .failure(.noAcknowledgement(request: requests[index].description + " (\(error))"))
            }
        }
    }

    // MARK: Single changes

    public func add(_ state: XFRMState) throws(XFRMError) { try performOne(.addState(state)) }
    public func update(_ state: XFRMState) throws(XFRMError) { try performOne(.updateState(state)) }
    public func delete(_ id: XFRMStateID) throws(XFRMError) { try performOne(.deleteState(id)) }
    public func add(_ policy: XFRMPolicy) throws(XFRMError) { try performOne(.addPolicy(policy)) }
    public func update(_ policy: XFRMPolicy) throws(XFRMError) { try performOne(.updatePolicy(policy)) }
    public func delete(_ id: XFRMPolicyID) throws(XFRMError) { try performOne(.deletePolicy(id)) }

    private func performOne(_ request: XFRMRequest) throws(XFRMError) {
        try perform([request])[0].get()
    }

    // MARK: Dumps and gets

    /// Every SA of the namespace, with lifetime counters. Retries when the kernel flags the dump as
    /// inconsistent (`NLM_F_DUMP_INTR`). SAs the value types cannot represent (AH, IPComp, BEET mode,
    /// other transforms) are left out: they are never the agent's.
    public func states() throws(XFRMError) -> [XFRMState] {
        try dump(type: XFRM_MSG_GETSA, entryType: XFRM_MSG_NEWSA) { (message) throws(XFRMError) -> XFRMState? in
            try XFRMMessageDecoder.isRepresentableState(message) ? XFRMMessageDecoder.state(from: message) : nil
        }
    }

    /// Every policy of the namespace. Policies the value types cannot represent (socket policies, templates
    /// for AH/IPComp or BEET mode) are left out.
    public func policies() throws(XFRMError) -> [XFRMPolicy] {
        try dump(type: XFRM_MSG_GETPOLICY, entryType: XFRM_MSG_NEWPOLICY) {
            (message) throws(XFRMError) -> XFRMPolicy? in
            try XFRMMessageDecoder.isRepresentablePolicy(message) ? XFRMMessageDecoder.policy(from: message) : nil
        }
    }

    /// The SA with this ID, or nil if there is none.
    public func state(_ id: XFRMStateID) throws(XFRMError) -> XFRMState? {
        try get(what: "get state \(id)", reply: XFRM_MSG_NEWSA, XFRMMessageDecoder.state(from:)) {
            sequence, builder throws(XFRMError) in
            try XFRMMessageEncoder.encodeStateID(
                id, type: XFRM_MSG_GETSA, flags: UInt16(NLM_F_REQUEST), sequence: sequence, into: builder)
        }
    }

    /// The policy with this ID, or nil if there is none.
    public func policy(_ id: XFRMPolicyID) throws(XFRMError) -> XFRMPolicy? {
        try get(what: "get \(id)", reply: XFRM_MSG_NEWPOLICY, XFRMMessageDecoder.policy(from:)) {
            sequence, builder throws(XFRMError) in
            try XFRMMessageEncoder.encodePolicyID(
                id, type: XFRM_MSG_GETPOLICY, flags: UInt16(NLM_F_REQUEST), sequence: sequence, into: builder)
        }
    }

    /// `exchange` for a get: an absent object is nil, not an error.
    private func get<T: Sendable>(
        what: String, reply: Int, _ decode: @Sendable (UnsafePointer<nlmsghdr>) throws(XFRMError) -> T,
        encode: @Sendable (UInt32, NetlinkMessageBuilder) throws(XFRMError) -> Void
    ) throws(XFRMError) -> T? {
        do {
            return try exchange(what: what, reply: reply, decode: decode, encode: encode)
        } catch {
            if case .notFound = error { return nil }
            throw error
        }
    }

    /// Sends one request and waits for its answer: a `reply`-typed message (decoded), or an acknowledgement
    /// (nil). A kernel error is thrown, `.notFound` included.
    func exchange<T: Sendable>(
        what: String, reply: Int, decode: @Sendable (UnsafePointer<nlmsghdr>) throws(XFRMError) -> T,
        encode: @Sendable (UInt32, NetlinkMessageBuilder) throws(XFRMError) -> Void
    ) throws(XFRMError) -> T? {
        try connection.withLock { (socket) throws(XFRMError) -> T? in
            let builder = NetlinkMessageBuilder(capacity: Self.messageHeadroom)
            let sequence = socket.reserveSequenceNumbers(1)
            do throws(XFRMError) {
                try encode(sequence, builder)
            } catch {
                builder.abandon()
                if case .invalidRequest(_, let reason) = error { throw .invalidRequest(request: what, reason: reason) }
                throw error
            }
            builder.finish()
            try socket.send(builder.bytes)
            var answer: Result<T?, XFRMError>?
            while answer == nil {
                try socket.receive { message throws(XFRMError) in
                    guard message.pointee.nlmsg_seq == sequence, answer == nil else { return }
                    switch Int32(message.pointee.nlmsg_type) {
                    case NLMSG_ERROR:
                        let code = cnl_error_code(message)
                        answer =
                            code == 0
                            ? .success(nil)
                            : .failure(
                                XFRMError(
                                    request: what, netlinkError: code,
                                    kernelMessage: cnl_ext_ack_message(message).map { String(cString: $0) }))
                    case Int32(reply):
                        do throws(XFRMError) { answer = .success(try decode(message)) } catch {
                            answer = .failure(error)
                        }
                    default:
                        break
                    }
                }
            }
            return try answer!.get()
        }
    }

    /// Runs a dump; `decode` returns nil for entries to leave out.
    private func dump<T: Sendable>(
        type: Int, entryType: Int, _ decode: @Sendable (UnsafePointer<nlmsghdr>) throws(XFRMError) -> T?
    ) throws(XFRMError) -> [T] {
        try connection.withLock { (socket) throws(XFRMError) -> [T] in
            let builder = NetlinkMessageBuilder(capacity: 256)
            for _ in 0..<Self.dumpAttempts {
                let sequence = socket.reserveSequenceNumbers(1)
                builder.reset()
                try XFRMMessageEncoder.encodeDump(type: type, sequence: sequence, into: builder)
                try socket.send(builder.bytes)
                var entries: [T] = []
                var interrupted = false
                var done = false
                var failure: XFRMError?
                while !done {
                    try socket.receive { message throws(XFRMError) in
                        guard message.pointee.nlmsg_seq == sequence else { return }
                        if message.pointee.nlmsg_flags & UInt16(NLM_F_DUMP_INTR) != 0 { interrupted = true }
                        switch Int32(message.pointee.nlmsg_type) {
                        case NLMSG_DONE:
                            done = true
                        case NLMSG_ERROR:
                            failure = XFRMError(
                                request: "dump (message type \(type))", netlinkError: cnl_error_code(message),
                                kernelMessage: cnl_ext_ack_message(message).map { String(cString: $0) })
                            done = true
                        case Int32(entryType):
                            if failure == nil {
                                do throws(XFRMError) {
                                    if let entry = try decode(message) { entries.append(entry) }
                                } catch {
                                    failure = error
                                }
                            }
                        default:
                            break
                        }
                    }
                }
                if let failure { throw failure }
                if !interrupted { return entries }
            }
            throw .malformedMessage(
                "dump (message type \(type)) was interrupted \(Self.dumpAttempts) times in a row (NLM_F_DUMP_INTR)")
        }
    }
}
