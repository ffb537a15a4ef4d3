import Logging
import NIOCore
import Synchronization

/// Caps the registry's open connections per client address and in total. A connection over a cap is closed as
/// soon as it is accepted, counted in `RegistryServerStatistics.connectionsRefused`, and logged (the first,
/// then one in 1,000), so one host holding thousands of sockets cannot take the server's descriptors from others.
final class ConnectionLimiter: Sendable {
    struct State {
        var perAddress: [String: Int] = [:]
        var total = 0
        var refused = 0
    }

    let maxPerAddress: Int
    let maxTotal: Int
    private let state = Mutex(State())
    private let statistics: RegistryServerStatistics
    private let logger: Logger

    init(maxPerAddress: Int, maxTotal: Int, statistics: RegistryServerStatistics, logger: Logger) {
        self.maxPerAddress = maxPerAddress
        self.maxTotal = maxTotal
        self.statistics = statistics
        self.logger = logger
    }

    /// True when a connection from `address` may stay; it then counts until `release`.
    func admit(_ address: String) -> Bool {
        let (admitted, refused) = state.withLock { s -> (Bool, Int) in
            let mine = s.perAddress[address, default: 0]
            guard mine < maxPerAddress, s.total < maxTotal else {
                s.refused += 1
                return (false, s.refused)
            }
            s.perAddress[address] = mine + 1
            s.total += 1
            return (true, s.refused)
        }
        if !admitted {
            statistics.connectionRefused()
            if refused % 1000 == 1 {
                logger.warning(
                    "connection refused: too many open connections",
                    metadata: [
                        "client": "\(address)", "maxPerClient": "\(maxPerAddress)", "maxTotal": "\(maxTotal)",
                        "refusedSoFar": "\(refused)",
                    ])
            }
        }
        return admitted
    }

    func release(_ address: String) {
        state.withLock { s in
            s.total -= 1
            if let n = s.perAddress[address] { s.perAddress[address] = n > 1 ? n - 1 : nil }
        }
    }

    /// The per-connection handler (Hummingbird adds one to each accepted connection).
    func handler() -> Handler { Handler(limiter: self) }

    final class Handler: ChannelInboundHandler, RemovableChannelHandler {
        typealias InboundIn = Any
        private let limiter: ConnectionLimiter
        private var address: String?

        init(limiter: ConnectionLimiter) { self.limiter = limiter }

        func handlerAdded(context: ChannelHandlerContext) {
            if context.channel.isActive { admit(context) }
        }

        func channelActive(context: ChannelHandlerContext) {
            admit(context)
            context.fireChannelActive()
        }

        func channelInactive(context: ChannelHandlerContext) {
            if let address { limiter.release(address) }
            address = nil
            context.fireChannelInactive()
        }

        private func admit(_ context: ChannelHandlerContext) {
            guard address == nil else { return }
            let client = context.channel.remoteAddress?.ipAddress ?? "unknown"
            if limiter.admit(client) {
                address = client
            } else {
                context.close(promise: nil)
            }
        }
    }
}
