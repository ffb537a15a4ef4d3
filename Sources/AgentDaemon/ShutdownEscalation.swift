import Dispatch
import Logging
import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

/// The way out when a graceful stop does not finish: a second SIGTERM/SIGINT, or a stop that takes longer than
/// `deadline`, ends the process at once with exit status 1 (never 0: a forced exit is not a clean stop).
///
/// The service group turns the first signal into a graceful shutdown and ignores later ones; this watches the
/// same signals beside it (dispatch signal sources all see a signal) and only ever acts after the first.
/// A forced exit leaves the datapath as a graceful stop does: in the kernel, as last programmed.
public final class ShutdownEscalation {
    private let sources: [any DispatchSourceSignal]

    /// Starts watching SIGTERM and SIGINT. Keep the value alive while the process runs.
    public init(deadline: Duration = .seconds(10), logger: Logger) {
        let queue = DispatchQueue(label: "ipsec-agent.shutdown-escalation")
        let signals = SignalCount()
        sources = [SIGTERM, SIGINT].map { number in
            let source = DispatchSource.makeSignalSource(signal: number, queue: queue)
            source.setEventHandler {
                let count = signals.increment()
                if count == 1 {
                    let (seconds, attoseconds) = deadline.components
                    let nanoseconds = Int(seconds) * 1_000_000_000 + Int(attoseconds / 1_000_000_000)
                    queue.asyncAfter(deadline: .now() + .nanoseconds(nanoseconds)) {
                        Self.forceExit("the graceful stop took longer than \(deadline)", logger: logger)
                    }
                } else {
                    Self.forceExit("a second stop signal arrived", logger: logger)
                }
            }
            source.resume()
            return source
        }
    }

    deinit { sources.forEach { $0.cancel() } }

    private static func forceExit(_ reason: String, logger: Logger) -> Never {
        logger.critical("forcing exit: \(reason); the datapath stays as last programmed")
        _exit(1)
    }
}

/// How many stop signals arrived (dispatch handlers run on one serial queue; the lock keeps the checker happy).
private final class SignalCount: Sendable {
    private let count = Mutex(0)
    func increment() -> Int {
        count.withLock {
            $0 += 1; return $0
        }
    }
}
