import Datapath
import IPsecPrimitives
import Keys
import Logging
import Registry
import XFRM

/// Reconcile: compare the kernel's and the BPF map's state with the desired state and repair the difference.
extension AgentController {
    // MARK: - Reconcile

    /// Dumps the agent's own objects, repairs any difference from the desired state, and refreshes the BPF map.
    /// Removes nothing until the registry delivered its first snapshot.
    @discardableResult
    public func reconcile() async -> ReconcileReport {
        await gate.acquire()
        defer { gate.release() }
        let started = now()
        var report = ReconcileReport()
        do {
            // Filtered here too: whatever the kernel adapter returns, foreign objects are never diffed or deleted.
            let states = Self.owned(try await kernel.ownedStates(), DatapathLayout.owns)
            let policies = Self.owned(try await kernel.ownedPolicies(), DatapathLayout.owns)
            recordCounters(states)
            let want = desiredCache.index(peers: peers, local: local, keys: keys, derive: derive)
            var diff = XFRMDiff(desired: want, actualStates: states, actualPolicies: policies)
            report.record(diff, removalsAllowed: registrySynced)
            diff.addStates = diff.addStates.map(resumingSequence)
            diff.replaceStates = diff.replaceStates.map(resumingSequence)
            var requests = diff.installRequests
            if registrySynced { requests += diff.removalRequests }
            if !requests.isEmpty {
                let results = await kernel.apply(requests)
                for (i, result) in results.enumerated() {
                    if case .failure(let error) = result, !Self.isAlreadyExists(error), !Self.isNotFound(error) {
                        report.errors += 1
                        lastError = "xfrm: \(error)"
                        logger.error(
                            "reconcile repair failed", metadata: ["request": "\(requests[i])", "error": "\(error)"])
                    }
                }
                logger.info(
                    "reconcile repaired \(requests.count) object(s)", metadata: ["summary": "\(report.summary)"])
            }
            xfrmHealthy = report.errors == 0
            if report.errors == 0 {
                for i in peers.indices {  // every peer's share of `want`, now in the kernel
                    peers[i].installed = desiredCache.objects(of: peers.entries[i].peer.name)
                }
                installedGlobal.policies = DesiredState.dropPolicies
            }
            report.bpfRepairs = repairEncryptMap()
        } catch {
            report.errors += 1
            lastError = "reconcile: \(error)"
            logger.error("reconcile could not read the kernel", metadata: ["error": "\(error)"])
        }
        report.duration = now() - started
        report.finishedAt = now()
        metrics.reconciled(report)
        lastReconcile = report
        await advance()
        return report
    }

    /// The owned objects of a dump; no copy when the kernel adapter already filtered (the usual case).
    public static func owned<T>(_ objects: [T], _ owns: (T) -> Bool) -> [T] {
        objects.allSatisfy(owns) ? objects : objects.filter(owns)
    }

    /// An OUT SA re-created after it vanished (a flush, a tampered SA) starts past every sequence number it used.
    func resumingSequence(_ state: XFRMState) -> XFRMState {
        guard state.mark != nil, let last = sequenceHistory[state.id] else { return state }
        var resumed = state
        resumed.outboundSequence = last &+ Self.sequenceJump
        logger.warning(
            "re-creating a lost OUT SA past its last sequence number",
            metadata: [
                "state": "\(state)", "lastSequence": "\(last)",
            ])
        return resumed
    }

    func recordCounters(_ states: [XFRMState]) {
        // In place: a steady pass allocates nothing. Only inbound SAs of keys other than the current one are
        // tracked (the only ones a fallback reclaim may remove), so a cluster on one key tracks none. Entries of
        // SAs absent from this dump are dropped after it.
        let t = now()
        counterPass &+= 1
        let pass = counterPass
        var tracked = 0
        for state in states {
            if state.mark != nil {
                if let sequence = state.outboundSequence {
                    let id = state.id
                    sequenceHistory[id] = max(sequenceHistory[id] ?? 0, sequence)
                }
                continue
            }
            guard let key = DatapathLayout.decode(spi: state.spi)?.key, key != currentKey else { continue }
            tracked += 1
            let id = state.id
            let packets = state.counters?.packets ?? 0
            if let i = counterHistory.index(forKey: id), counterHistory.values[i].packets == packets {
                counterHistory.values[i].pass = pass
            } else {
                counterHistory[id] = (packets, t, pass)
            }
        }
        if counterHistory.count != tracked {
            counterHistory = counterHistory.filter { $0.value.pass == pass }
        }
    }

    /// Makes the pinned map match the agent's view (local key, one entry per peer pod CIDR).
    func repairEncryptMap() -> Int {
        var repairs = 0
        do {
            if let encryptKey, try encryptMap.localSPI() != encryptKey {
                try encryptMap.setLocalSPI(encryptKey)
                repairs += 1
            }
            let actual = try encryptMap.peers()
            var wanted: [IPPrefix: PeerEncryptEntry] = [:]
            for entry in peers.entries {
                guard let encryptEntry = entry.encryptEntry else { continue }
                for cidr in entry.peer.podCIDRs { wanted[cidr] = encryptEntry }
            }
            for (cidr, entry) in wanted where actual[cidr] != entry {
                try encryptMap.upsertPeer(cidr, entry)
                repairs += 1
            }
            if registrySynced {
                for cidr in actual.keys where wanted[cidr] == nil {
                    try encryptMap.deletePeer(cidr)
                    repairs += 1
                }
            }
        } catch {
            lastError = "bpf: \(error)"
            logger.error("BPF map repair failed", metadata: ["error": "\(error)"])
        }
        return repairs
    }
}
