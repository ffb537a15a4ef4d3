import CNetlink
import Foundation
import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

/// Watches the kernel's XFRM notifications (multicast groups SA, POLICY and EXPIRE) on its own socket.
///
/// A dedicated thread (never the cooperative pool) blocks in `poll` and yields decoded events to `events`.
/// When notifications were lost (`ENOBUFS`) it yields `.resyncNeeded`. `stop()` (or dropping the stream)
/// ends the thread and closes the socket; the stream then finishes.
public final class XFRMMonitor: Sendable {
    public let events: AsyncStream<XFRMEvent>
    private let wakeUp: WakeUp

    /// Joins the groups on a new socket (inside `networkNamespacePath` when given) and starts the reader thread.
    /// Events that happen after `init` returns are delivered.
    public convenience init(
        networkNamespacePath: String? = nil,
        bufferingPolicy: AsyncStream<XFRMEvent>.Continuation.BufferingPolicy = .unbounded
    ) throws(XFRMError) {
        try self.init(
            networkNamespacePath: networkNamespacePath, receiveBufferBytes: 8 * 1024 * 1024,
            bufferingPolicy: bufferingPolicy)
    }

    /// `receiveBufferBytes` is the socket's receive buffer (tests make it tiny to provoke `ENOBUFS`).
    init(
        networkNamespacePath: String?, receiveBufferBytes: Int32,
        bufferingPolicy: AsyncStream<XFRMEvent>.Continuation.BufferingPolicy
    ) throws(XFRMError) {
        let groups = [XFRMNLGRP_SA, XFRMNLGRP_POLICY, XFRMNLGRP_EXPIRE].map { UInt32($0.rawValue) }
        let socket = try NetlinkSocket(
            networkNamespacePath: networkNamespacePath, receiveBufferBytes: receiveBufferBytes,
            sendBufferBytes: 64 * 1024, groups: groups)
        let wakeUp = try WakeUp()
        self.wakeUp = wakeUp
        let (stream, continuation) = AsyncStream<XFRMEvent>.makeStream(bufferingPolicy: bufferingPolicy)
        events = stream
        let handOff = HandOff(Reader(socket: socket, wakeUp: wakeUp, continuation: continuation))
        continuation.onTermination = { _ in wakeUp.signal() }
        let thread = Thread { handOff.take()?.run() }
        thread.name = "xfrm-monitor"
        thread.start()
    }

    deinit { stop() }

    /// Stops the reader thread; `events` finishes. Safe to call more than once.
    public func stop() {
        wakeUp.signal()
    }

    /// An eventfd that wakes the reader thread's `poll`; closed by the reader when it exits.
    private final class WakeUp: Sendable {
        let fd: Int32
        /// True once closed; guards `signal()` against writing to a reused descriptor.
        private let closed = Mutex(false)

        init() throws(XFRMError) {
            fd = eventfd(0, Int32(EFD_CLOEXEC))
            guard fd >= 0 else { throw .system(call: "eventfd", errno: Glibc.errno) }
        }

        func signal() {
            closed.withLock { isClosed in
                guard !isClosed else { return }
                var one: UInt64 = 1
                _ = write(fd, &one, MemoryLayout<UInt64>.size)
            }
        }

        func close() {
            closed.withLock { isClosed in
                guard !isClosed else { return }
                isClosed = true
                _ = Glibc.close(fd)
            }
        }
    }

    /// Passes the reader (and its socket) to the thread that owns it from then on.
    private final class HandOff: Sendable {
        private let slot: Mutex<Reader?>
        init(_ reader: consuming sending Reader) { slot = Mutex(reader) }
        func take() -> sending Reader? { slot.withLock { $0.take() } }
    }

    /// The reader thread's state: it alone uses the socket, then closes it and the wake descriptor.
    private final class Reader {
        private let socket: NetlinkSocket
        private let wakeUp: WakeUp
        private let continuation: AsyncStream<XFRMEvent>.Continuation

        init(socket: NetlinkSocket, wakeUp: WakeUp, continuation: AsyncStream<XFRMEvent>.Continuation) {
            self.socket = socket
            self.wakeUp = wakeUp
            self.continuation = continuation
        }

        func run() {
            defer {
                wakeUp.close()
                continuation.finish()
            }
            var descriptors = [
                pollfd(fd: socket.fd, events: Int16(POLLIN), revents: 0),
                pollfd(fd: wakeUp.fd, events: Int16(POLLIN), revents: 0),
            ]
            while true {
                let ready = poll(&descriptors, nfds_t(descriptors.count), -1)
                if ready < 0 {
                    if Glibc.errno == EINTR { continue }
                    return
                }
                if descriptors[1].revents != 0 { return }
                guard descriptors[0].revents != 0 else { continue }
                do throws(XFRMError) {
                    try socket.receive { message throws(XFRMError) in
                        if let event = Self.event(from: message) { continuation.yield(event) }
                    }
                } catch {
                    if case .system(_, let code) = error, code == ENOBUFS {
                        continuation.yield(.resyncNeeded)
                    } else if case .malformedMessage = error {
                        continuation.yield(.resyncNeeded)
                    } else {
                        return
                    }
                }
            }
        }

        /// Decodes one notification; undecodable ones become `.resyncNeeded` so the consumer re-reads.
        static func event(from message: UnsafePointer<nlmsghdr>) -> XFRMEvent? {
            do throws(XFRMError) {
                switch Int(message.pointee.nlmsg_type) {
                case XFRM_MSG_NEWSA: return .stateAdded(try XFRMMessageDecoder.state(from: message))
                case XFRM_MSG_UPDSA: return .stateUpdated(try XFRMMessageDecoder.state(from: message))
                case XFRM_MSG_DELSA: return .stateDeleted(try XFRMMessageDecoder.deletedState(from: message))
                case XFRM_MSG_NEWPOLICY: return .policyAdded(try XFRMMessageDecoder.policy(from: message))
                case XFRM_MSG_UPDPOLICY: return .policyUpdated(try XFRMMessageDecoder.policy(from: message))
                case XFRM_MSG_DELPOLICY: return .policyDeleted(try XFRMMessageDecoder.deletedPolicy(from: message))
                case XFRM_MSG_EXPIRE:
                    let (id, hard) = try XFRMMessageDecoder.expiredState(from: message)
                    return .stateExpired(id, hard: hard)
                case XFRM_MSG_POLEXPIRE:
                    let (id, hard) = try XFRMMessageDecoder.expiredPolicy(from: message)
                    return .policyExpired(id, hard: hard)
                case XFRM_MSG_FLUSHSA, XFRM_MSG_FLUSHPOLICY:
                    return .resyncNeeded
                default:
                    return nil
                }
            } catch {
                return .resyncNeeded
            }
        }
    }
}
