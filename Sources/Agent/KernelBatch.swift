import Synchronization
import XFRM

/// One batch of peers' kernel requests, as the controller pipelines them: sent without waiting, so the actor
/// builds the next batch while the kernel applies this one (`AgentController.program(peers:)`).
struct KernelBatch: Sendable {
    var installs: [XFRMRequest] = []
    /// For each install, the index (in the batch) of the peer it belongs to.
    var installOwners: [Int32] = []
    var removals: [XFRMRequest] = []
    var removalOwners: [Int32] = []

    /// What the kernel made of a batch.
    struct Outcome: Sendable {
        /// Indices of the peers with a failed install (their removals were not sent).
        var failed = Set<Int32>()
        var installFailures: [(XFRMRequest, any Error)] = []
        var removalFailures: [(XFRMRequest, any Error)] = []
    }

    /// Submits the installs, then the removals of the peers whose installs all succeeded (make before break),
    /// and returns at once; the outcome arrives through the returned `Pending`.
    func send(to kernel: any XFRMKernel) -> Pending {
        let pending = Pending()
        sendInstalls(kernel, pending)
        return pending
    }

    private func sendInstalls(_ kernel: any XFRMKernel, _ pending: Pending) {
        guard !installs.isEmpty else {
            sendRemovals(removals, kernel, Outcome(), pending)
            return
        }
        kernel.submit(installs) { [self] results in
            var outcome = Outcome()
            for (i, result) in results.enumerated() {
                if case .failure(let error) = result, !AgentController.isAlreadyExists(error) {
                    outcome.failed.insert(installOwners[i])
                    outcome.installFailures.append((installs[i], error))
                }
            }
            let batch =
                outcome.failed.isEmpty
                ? removals
                : removals.indices.filter { !outcome.failed.contains(removalOwners[$0]) }.map { removals[$0] }
            sendRemovals(batch, kernel, outcome, pending)
        }
    }

    private func sendRemovals(_ batch: [XFRMRequest], _ kernel: any XFRMKernel, _ outcome: Outcome, _ pending: Pending)
    {
        guard !batch.isEmpty else {
            pending.fulfil(outcome)
            return
        }
        kernel.submit(batch) { results in
            var outcome = outcome
            for (i, result) in results.enumerated() {
                if case .failure(let error) = result, !AgentController.isNotFound(error) {
                    outcome.removalFailures.append((batch[i], error))
                }
            }
            pending.fulfil(outcome)
        }
    }

    /// A batch's outcome to come: fulfilled once, on whatever thread the kernel completes on; awaited once.
    final class Pending: Sendable {
        private let state = Mutex<(outcome: Outcome?, waiter: CheckedContinuation<Outcome, Never>?)>((nil, nil))

        func fulfil(_ outcome: Outcome) {
            let waiter = state.withLock { s -> CheckedContinuation<Outcome, Never>? in
                if let waiter = s.waiter {
                    s.waiter = nil
                    return waiter
                }
                s.outcome = outcome
                return nil
            }
            waiter?.resume(returning: outcome)
        }

        var outcome: Outcome {
            get async {
                await withCheckedContinuation { continuation in
                    let ready = state.withLock { s -> Outcome? in
                        if let outcome = s.outcome { return outcome }
                        s.waiter = continuation
                        return nil
                    }
                    if let ready { continuation.resume(returning: ready) }
                }
            }
        }
    }
}
