import Datapath
import IPsecPrimitives
import Keys
import Logging
import Registry
import XFRM

/// Kernel programming: the global drop policies and per-peer SAs and policies, in pipelined batches.
extension AgentController {
    // MARK: - Kernel programming

    func programGlobal() async -> Bool {
        // Every rotation passes here: when the drop policies are installed already, no model or diff is built.
        guard installedGlobal.policies != DesiredState.dropPolicies else { return true }
        var want = DesiredState()
        want.policies = DesiredState.dropPolicies
        let diff = XFRMDiff(desired: want, actualStates: [], actualPolicies: installedGlobal.policies.values)
        guard !diff.isEmpty else { return true }
        let requests = diff.installRequests
        let results = await kernel.apply(requests)
        noteFailures(requests, results, 0..<requests.count)
        let ok = results.allSatisfy { result in
            if case .failure(let error) = result { return Self.isAlreadyExists(error) }
            return true
        }
        if ok { installedGlobal = want }
        return ok
    }

    /// Brings the peers in these table slots from what was last installed to what is desired now. Installs precede
    /// removals; a peer's model is only advanced when every request for it succeeded. The slots hold for the whole
    /// call: every caller holds the gate, and nothing inserts or removes a peer while it runs (so no peer is looked
    /// up by name, twice per peer, in a rotation).
    ///
    /// Pipelined: while the kernel applies one batch (off the actor, on the kernel adapter's own thread), the
    /// actor builds the next, so the agent's per-peer work (derivation, diff, requests) runs beside the kernel's
    /// instead of adding to it. Each batch is sent as soon as it is built, before the previous batch's outcome is
    /// awaited: the kernel adapter's queue then goes from one batch to the next without waiting for two thread
    /// hand-offs (to the actor and back). At most two batches are in flight. Batches touch disjoint peers; each
    /// batch's own order (SAs, policies, then removals for peers whose installs all succeeded) is kept.
    @discardableResult
    func program(slots: [Int]) async -> Bool {
        var size = max(1, settings.firstBatchPeers)
        var allOK = true
        var start = 0
        var inFlight: (plan: BatchPlan, pending: KernelBatch.Pending)?
        repeat {
            var sent: (plan: BatchPlan, pending: KernelBatch.Pending)?
            if start < slots.count {
                // A remainder smaller than this batch joins it (no tiny last batch).
                var end = min(start + size, slots.count)
                if slots.count - end < size { end = slots.count }
                var next = plan(batch: slots[start..<end])  // while the kernel works on the previous batch
                start = end
                size = min(max(2, settings.batchGrowth) * size, max(size, settings.batchPeersLimit))
                let batch = next.batch
                next.batch = KernelBatch()  // the plan keeps only what `finish` needs
                sent = (next, batch.send(to: kernel))
            }
            if let previous = inFlight, !finish(previous.plan, await previous.pending.outcome) { allOK = false }
            inFlight = sent
        } while inFlight != nil
        return allOK
    }

    /// One batch as built on the actor: the peers' new models and the kernel work that installs them.
    struct BatchPlan {
        var slots: ArraySlice<Int>
        var wants: [PeerObjects]
        var batch: KernelBatch
    }

    func plan(batch slots: ArraySlice<Int>) -> BatchPlan {
        // One batch: every peer's new SAs first, then every policy — SAs exist before any policy points at them,
        // and the kernel gets the same shape of batch as the XFRM client's floor in the benchmark.
        var wants: [PeerObjects] = []
        wants.reserveCapacity(slots.count)
        // Room for a rotation step's two SAs and one policy per peer (arrays grown from empty reallocate and copy
        // every request each time they double).
        var requests: [XFRMRequest] = [], owners: [Int32] = []
        requests.reserveCapacity(3 * slots.count)
        owners.reserveCapacity(3 * slots.count)
        var policyRequests: [XFRMRequest] = [], policyOwners: [Int32] = []
        policyRequests.reserveCapacity(slots.count)
        policyOwners.reserveCapacity(slots.count)
        var removals: [XFRMRequest] = []
        var removalOwners: [Int32] = []
        desiredCache.prepare(local: local, keys: keys)
        // Peers are read from a local reference to the table: an entry's fields read through the actor's stored
        // property were copied (retaining the peer's strings and arrays) to be passed on. Dropped before `finish`
        // writes to the table, so that write copies nothing.
        let table = peers
        for slot in slots {
            let want = desiredCache.preparedState(
                for: table.entries[slot].peer, live: table.entries[slot].keys,
                local: local, keys: keys, derive: derive)
            let have = table.entries[slot].installed ?? PeerObjects()
            let owner = Int32(wants.count)
            wants.append(want)
            // A rotation step only adds: no diff needed.
            if XFRMDiff.forEachAddition(
                installed: have, desired: want,
                state: {
                    requests.append(.addState($0))
                    owners.append(owner)
                },
                policy: {
                    policyRequests.append(.addPolicy($0))
                    policyOwners.append(owner)
                })
            {
                continue
            }
            let diff = XFRMDiff(installed: have, desired: want)
            for state in diff.addStates {
                requests.append(.addState(state))
                owners.append(owner)
            }
            for policy in diff.addPolicies {
                policyRequests.append(.addPolicy(policy))
                policyOwners.append(owner)
            }
            for policy in diff.updatePolicies {
                policyRequests.append(.updatePolicy(policy))
                policyOwners.append(owner)
            }
            for request in diff.removalRequests {
                removals.append(request)
                removalOwners.append(owner)
            }
        }
        requests += policyRequests
        owners += policyOwners
        return BatchPlan(
            slots: slots, wants: wants,
            batch: KernelBatch(
                installs: requests, installOwners: owners, removals: removals, removalOwners: removalOwners))
    }

    /// Records a sent batch's outcome on the actor: advances the models of the peers whose installs all
    /// succeeded, logs failures. True when nothing failed.
    func finish(_ plan: BatchPlan, _ outcome: KernelBatch.Outcome) -> Bool {
        for (request, error) in outcome.installFailures { noteFailure(request, error) }
        for (index, slot) in plan.slots.enumerated() where !outcome.failed.contains(Int32(index)) {
            peers[slot].installed = plan.wants[index]
        }
        for (request, error) in outcome.removalFailures {
            logger.warning(
                "XFRM removal failed (reconcile will retry)", metadata: ["request": "\(request)", "error": "\(error)"])
        }
        return outcome.failed.isEmpty && outcome.removalFailures.isEmpty
    }

    func noteFailures(_ requests: [XFRMRequest], _ results: [Result<Void, any Error>], _ range: Range<Int>) {
        for i in range {
            if case .failure(let error) = results[i], !Self.isAlreadyExists(error) { noteFailure(requests[i], error) }
        }
    }

    func noteFailure(_ request: XFRMRequest, _ error: any Error) {
        lastError = "xfrm: \(error)"
        metrics.xfrmError()
        logger.error("XFRM request failed", metadata: ["request": "\(request)", "error": "\(error)"])
    }

    func publishRecord(spi: KeyID?, encryptSpi: KeyID?) async -> Int64? {
        let fingerprint = spi.flatMap { fingerprints[$0] } ?? ""
        let update = NodeRecordUpdate(
            spi: spi, encryptSpi: encryptSpi, keyFingerprint: fingerprint,
            xfrmRevision: appliedRevision)
        do {
            let revision = try await publisher.publish(update)
            publishedRevision = update.xfrmRevision
            return revision
        } catch {
            lastError = "registry: \(error)"
            logger.warning("publishing the node record failed (will retry)", metadata: ["error": "\(error)"])
            return nil
        }
    }

    static func isAlreadyExists(_ error: any Error) -> Bool {
        (error as? XFRMKernelError) == .alreadyExists
    }

    static func isNotFound(_ error: any Error) -> Bool {
        (error as? XFRMKernelError) == .notFound
    }
}
