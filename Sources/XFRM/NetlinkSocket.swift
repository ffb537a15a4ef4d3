import CNetlink

#if canImport(Glibc)
    import Glibc
#endif

/// One NETLINK_XFRM socket and its receive buffer. Not thread-safe: it has exactly one owner
/// (`XFRMClient` keeps it in a `Mutex`, `XFRMMonitor` on its reader thread). Calls block briefly.
final class NetlinkSocket {
    let fd: Int32
    private var sequence: UInt32
    private let receiveBuffer: UnsafeMutableRawBufferPointer
    /// The buffer batches are encoded into (`XFRMClient.perform`), made on first use and kept: a pipelined
    /// rotation sends many batches. Zeroed after every send (`NetlinkMessageBuilder.reset`): it holds key bytes.
    lazy var batchBuilder = NetlinkMessageBuilder(capacity: XFRMClient.batchBytes + XFRMClient.messageHeadroom)

    /// Opens the socket (inside `networkNamespacePath` when given), enables extended acks and capped acks,
    /// forces a large receive buffer, and joins the multicast `groups` (XFRMNLGRP_*).
    init(
        networkNamespacePath: String?, receiveBufferBytes: Int32, sendBufferBytes: Int32,
        groups: [UInt32] = [], receiveTimeoutSeconds: Int = 0
    ) throws(XFRMError) {
        var failedStep: UnsafePointer<CChar>?
        let fd = networkNamespacePath.withOptionalCString { cnl_xfrm_socket_open($0, &failedStep) }
        guard fd >= 0 else {
            let step = failedStep.map { String(cString: $0) } ?? "socket"
            throw .system(call: step + (networkNamespacePath.map { " (\($0))" } ?? ""), errno: Glibc.errno)
        }
        do throws(XFRMError) {
            try Self.configure(
                fd, receiveBufferBytes: receiveBufferBytes, sendBufferBytes: sendBufferBytes, groups: groups,
                receiveTimeoutSeconds: receiveTimeoutSeconds)
        } catch {
            close(fd)
            throw error
        }
        self.fd = fd
        self.sequence = UInt32.random(in: 1...UInt32.max / 2)
        self.receiveBuffer = .allocate(byteCount: 64 * 1024, alignment: 16)
    }

    private static func configure(
        _ fd: Int32, receiveBufferBytes: Int32, sendBufferBytes: Int32, groups: [UInt32],
        receiveTimeoutSeconds: Int
    ) throws(XFRMError) {
        try setOption(fd, SOL_SOCKET, SO_RCVBUFFORCE, receiveBufferBytes, fallback: SO_RCVBUF)
        try setOption(fd, SOL_SOCKET, SO_SNDBUFFORCE, sendBufferBytes, fallback: SO_SNDBUF)
        try setOption(fd, cnl_sol_netlink(), NETLINK_EXT_ACK, 1)
        try setOption(fd, cnl_sol_netlink(), NETLINK_CAP_ACK, 1)
        if receiveTimeoutSeconds > 0 {
            var timeout = timeval(tv_sec: receiveTimeoutSeconds, tv_usec: 0)
            guard setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size)) == 0 else {
                throw .system(call: "setsockopt(SO_RCVTIMEO)", errno: Glibc.errno)
            }
        }
        var address = sockaddr_nl()
        address.nl_family = sa_family_t(AF_NETLINK)
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(fd, $0, socklen_t(MemoryLayout<sockaddr_nl>.size))
            }
        }
        guard bound == 0 else { throw .system(call: "bind(AF_NETLINK)", errno: Glibc.errno) }
        for group in groups {
            try setOption(fd, cnl_sol_netlink(), NETLINK_ADD_MEMBERSHIP, Int32(bitPattern: group))
        }
    }

    deinit {
        close(fd)
        receiveBuffer.deallocate()
    }

    /// Reserves `count` consecutive sequence numbers and returns the first.
    func reserveSequenceNumbers(_ count: Int) -> UInt32 {
        let first = sequence
        sequence &+= UInt32(truncatingIfNeeded: max(count, 1))
        if sequence == 0 { sequence = 1 }
        return first
    }

    /// Sends `bytes` (one or many netlink messages) to the kernel in one sendto.
    func send(_ bytes: UnsafeRawBufferPointer) throws(XFRMError) {
        var kernel = sockaddr_nl()
        kernel.nl_family = sa_family_t(AF_NETLINK)
        while true {
            let sent = withUnsafePointer(to: &kernel) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    sendto(fd, bytes.baseAddress, bytes.count, 0, $0, socklen_t(MemoryLayout<sockaddr_nl>.size))
                }
            }
            if sent == bytes.count { return }
            if sent < 0 && Glibc.errno == EINTR { continue }
            throw .system(call: "sendto(NETLINK_XFRM, \(bytes.count) bytes)", errno: sent < 0 ? Glibc.errno : EMSGSIZE)
        }
    }

    /// Receives one datagram (possibly several netlink messages) and calls `body` for each message.
    /// The pointers are valid only during `body`.
    func receive(_ body: (UnsafePointer<nlmsghdr>) throws(XFRMError) -> Void) throws(XFRMError) {
        var received: Int
        repeat {
            received = recv(fd, receiveBuffer.baseAddress, receiveBuffer.count, Int32(MSG_TRUNC))
        } while received < 0 && Glibc.errno == EINTR
        guard received >= 0 else { throw .system(call: "recv(NETLINK_XFRM)", errno: Glibc.errno) }
        guard received <= receiveBuffer.count else {
            throw .malformedMessage("a \(received)-byte datagram did not fit the \(receiveBuffer.count)-byte buffer")
        }
        // Dumps and gets carry key bytes: wipe what was received once it has been decoded.
        defer { receiveBuffer.baseAddress!.initializeMemory(as: UInt8.self, repeating: 0, count: received) }
        var remaining = Int32(received)
        var header = UnsafeRawPointer(receiveBuffer.baseAddress!).assumingMemoryBound(to: nlmsghdr.self)
        while mnl_nlmsg_ok(header, remaining) {
            try body(header)
            header = UnsafePointer(mnl_nlmsg_next(header, &remaining))
        }
    }

    private static func setOption(
        _ fd: Int32, _ level: Int32, _ name: Int32, _ value: Int32, fallback: Int32? = nil
    ) throws(XFRMError) {
        var value = value
        let size = socklen_t(MemoryLayout<Int32>.size)
        if setsockopt(fd, level, name, &value, size) == 0 { return }
        if let fallback, Glibc.errno == EPERM, setsockopt(fd, level, fallback, &value, size) == 0 { return }
        throw .system(call: "setsockopt(level \(level), option \(name))", errno: Glibc.errno)
    }
}

extension Optional<String> {
    func withOptionalCString<R>(_ body: (UnsafePointer<CChar>?) -> R) -> R {
        switch self {
        case .some(let string): string.withCString { body($0) }
        case .none: body(nil)
        }
    }
}
