import Agent
import AgentDaemon
import ArgumentParser
import Datapath
import Foundation
import IPsecPrimitives
import Keys
import Logging
import Prometheus
import Registry
import Synchronization
import XFRM

/// Acknowledges every publish at once with a growing revision, and notes when each publish came (the
/// rotation's phase boundaries: the advertisement ends the XFRM phase, the `encryptSpi` publish follows the BPF
/// switch).
final class BenchPublisher: RecordPublisher {
    private let state = Mutex<(revision: Int64, log: [(ContinuousClock.Instant, NodeRecordUpdate)])>((1000, []))
    var revision: Int64 { state.withLock { $0.revision } }
    /// The publishes since the last call, with their times.
    func drain() -> [(ContinuousClock.Instant, NodeRecordUpdate)] {
        state.withLock { s in
            defer { s.log = [] }; return s.log
        }
    }
    func publish(_ record: NodeRecordUpdate) async throws -> Int64 {
        let t = ContinuousClock.now
        return state.withLock { s in
            s.log.append((t, record))
            s.revision += 1
            return s.revision
        }
    }
}
