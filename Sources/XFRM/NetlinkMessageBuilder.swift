import CNetlink

/// Writes netlink messages back to back into one buffer, for a single sendto.
/// Not thread-safe; owned by one call. `reset()` zeroes what was written, so key bytes do not linger.
final class NetlinkMessageBuilder {
    private let storage: UnsafeMutableRawBufferPointer
    /// Bytes of complete messages.
    private(set) var length = 0
    private(set) var messageCount = 0
    private var current: UnsafeMutablePointer<nlmsghdr>?

    init(capacity: Int) {
        storage = .allocate(byteCount: capacity, alignment: 16)
        storage.initializeMemory(as: UInt8.self, repeating: 0)
    }

    deinit {
        reset()
        storage.deallocate()
    }

    var capacity: Int { storage.count }
    var bytes: UnsafeRawBufferPointer { UnsafeRawBufferPointer(rebasing: storage[0..<length]) }

    /// Starts a message. The caller adds a family header and attributes, then `finish()` or `abandon()`.
    func begin(type: UInt16, flags: UInt16, sequence: UInt32) throws(XFRMError) {
        precondition(current == nil, "previous message not finished")
        try ensureRoom(Int(cnl_nlmsg_header_length()), at: length)
        current = cnl_put_header(storage.baseAddress! + length, type, flags, sequence)
    }

    /// Appends the fixed family header (e.g. `xfrm_usersa_info`).
    func appendHeader<T>(_ value: T) throws(XFRMError) {
        let nlh = current!
        let size = MemoryLayout<T>.size
        try ensureRoom(Int(cnl_nlmsg_align(size)))
        let destination = mnl_nlmsg_put_extra_header(nlh, size)!
        withUnsafeBytes(of: value) { destination.copyMemory(from: $0.baseAddress!, byteCount: size) }
    }

    /// Appends an attribute whose payload is the bytes of `value` (a C struct or integer).
    func appendAttribute<T>(type: UInt16, _ value: T) throws(XFRMError) {
        try withUnsafeBytes(of: value) { (raw) throws(XFRMError) in
            try appendAttribute(type: type, raw, UnsafeRawBufferPointer(start: nil, count: 0))
        }
    }

    /// Appends an attribute whose payload is `head` then `tail` (`tail` nil base = zero bytes).
    func appendAttribute(type: UInt16, _ head: UnsafeRawBufferPointer, _ tail: UnsafeRawBufferPointer) throws(XFRMError)
    {
        let payload = head.count + tail.count
        try ensureRoom(Int(cnl_attr_header_length()) + Int(cnl_attr_align(payload)))
        guard payload + Int(cnl_attr_header_length()) <= Int(UInt16.max) else {
            throw .invalidRequest(request: "attribute \(type)", reason: "payload of \(payload) bytes exceeds 65535")
        }
        cnl_attr_put2(current!, type, head.baseAddress, head.count, tail.baseAddress, tail.count)
    }

    /// Appends an attribute of `zeroTailBytes` zero bytes after `head`.
    func appendAttribute<T>(type: UInt16, _ value: T, zeroTailBytes: Int) throws(XFRMError) {
        try withUnsafeBytes(of: value) { (raw) throws(XFRMError) in
            try ensureRoom(Int(cnl_attr_header_length()) + Int(cnl_attr_align(raw.count + zeroTailBytes)))
            cnl_attr_put2(current!, type, raw.baseAddress, raw.count, nil, zeroTailBytes)
        }
    }

    /// Completes the current message.
    func finish() {
        let nlh = current!
        length += Int(cnl_nlmsg_align(Int(nlh.pointee.nlmsg_len)))
        messageCount += 1
        current = nil
    }

    /// Drops the current message (an encoding error); zeroes what it wrote.
    func abandon() {
        guard let nlh = current else { return }
        let written = min(Int(nlh.pointee.nlmsg_len), storage.count - length)
        (storage.baseAddress! + length).initializeMemory(as: UInt8.self, repeating: 0, count: written)
        current = nil
    }

    /// Forgets all messages and zeroes their bytes.
    func reset() {
        abandon()
        if length > 0 { storage.baseAddress!.initializeMemory(as: UInt8.self, repeating: 0, count: length) }
        length = 0
        messageCount = 0
    }

    private func ensureRoom(_ bytes: Int, at start: Int? = nil) throws(XFRMError) {
        let used = start ?? (length + Int(current!.pointee.nlmsg_len))
        guard used + bytes <= storage.count else {
            throw .invalidRequest(
                request: "netlink message", reason: "does not fit the \(storage.count)-byte batch buffer")
        }
    }
}
