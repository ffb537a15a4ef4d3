import Datapath
import IPsecPrimitives
import Keys
import Logging
import Registry
import XFRM

/// The rotation's order, step by step (docs/architecture.md): advance through the phases, switch egress only
/// after the advertisement, reclaim per peer and direction once acknowledged; and the periodic tick.
extension AgentController {
    // MARK: - The rotation

    /// Moves the rotation forward as far as acknowledgements allow. Idempotent: called after every input.
    func advance() async {
        // "Every known peer" means nothing before the registry's first snapshot: a restarted agent that advertised
        // then would promise inbound SAs it has not installed.
        guard let key = currentKey, registrySynced else { return }

        // 2. XFRM: the new key for every peer, both directions. Nothing is advertised until all is acked.
        if advertisedKey != key || phase == .xfrm {
            enter(.xfrm)
            for i in peers.indices {
                peers[i].keys.inbound.insert(key)
                peers[i].keys.outbound.insert(key)
            }
            let globalOK = await programGlobal()
            let peersOK = await program(slots: Array(peers.indices))
            let programmed = globalOK && peersOK
            xfrmHealthy = programmed
            guard programmed else {
                logger.warning("XFRM programming incomplete; not advertising key \(key) yet (will retry)")
                return
            }
        }

        // 3. Advertise.
        if advertisedKey != key {
            enter(.advertise)
            spiOnRecord = key  // from now on every publish says "I can receive `key`" (its SAs are all installed)
            guard let revision = await publishRecord(spi: key, encryptSpi: encryptKey) else { return }
            advertisedKey = key
            advertiseRevision = revision
            advertisedAt = now()
            logger.info("advertised key \(key)", metadata: ["revision": "\(revision)"])
        }

        // Peer entries first: a fingerprint verdict may change with the key just loaded.
        updateEncryptEntries()

        // 4. BPF: switch the local key, then tell peers.
        if encryptKey != key {
            enter(.bpf)
            do {
                try encryptMap.setLocalSPI(key)
            } catch {
                lastError = "bpf: \(error)"
                logger.error("BPF local key switch failed (will retry)", metadata: ["error": "\(error)"])
                return
            }
            encryptKey = key
            guard await publishRecord(spi: key, encryptSpi: key) != nil else { return }
        }

        // 5/6. Reclaim by acknowledgement.
        if phase != .idle || hasOldKeys { enter(.reclaim) }
        await reclaim()
    }

    var hasOldKeys: Bool {
        peers.entries.contains { entry in
            entry.keys.inbound.contains { $0 != currentKey } || entry.keys.outbound.contains { $0 != currentKey }
        }
    }

    func enter(_ next: RotationPhase) {
        guard next != phase else { return }
        let t = now()
        if phase != .idle {
            metrics.phaseDuration(phase, t - phaseStartedAt)
            logger.info("rotation phase \(phase.rawValue) done", metadata: ["duration": "\(t - phaseStartedAt)"])
        }
        phase = next
        phaseStartedAt = t
        metrics.setPhase(next)
    }

    /// Removes old keys per peer and direction once the peer can no longer use them.
    func reclaim() async {
        guard let current = currentKey, advertisedKey == current, encryptKey == current else { return }
        // The steady state (every peer on the current key only) has nothing to reclaim: no per-peer work.
        guard hasOldKeys || keys.count > 1 || phase != .idle else { return }
        var changed: [Int] = []
        var fallbacks = 0
        // One clock reading for the pass (a clock read per peer is a system call on some hosts), and none of the
        // per-SA fallback checks before the fallback timeout.
        let t = now()
        let fallbackOpen = advertisedAt.map { t - $0 >= settings.fallbackTimeout } ?? false
        for i in peers.indices {
            let live = peers.entries[i].keys
            // The peer's fields are read in place: copying the `Peer` retained its strings and arrays, per peer.
            // A peer holding other key material under our key ID will not switch to us: keep everything.
            if peers.entries[i].peer.spi == current, fingerprintMismatch(peers.entries[i].peer) { continue }
            let (spi, encryptSpi) = (peers.entries[i].peer.spi, peers.entries[i].peer.encryptSpi)
            let (xfrmRevision, nodeID) = (peers.entries[i].peer.xfrmRevision, peers.entries[i].peer.nodeID)
            var next = live
            for old in live.inbound where old != current {
                // The peer sends older(its encryptSpi, its view of our spi). It has seen our advertisement once its
                // xfrmRevision reached the revision of that advertisement.
                let acked =
                    encryptSpi.map { old.isOlder(than: $0) } == true && old.isOlder(than: current)
                    && xfrmRevision >= advertiseRevision
                if acked
                    || fallbackOpen
                        && fallbackAllowed(DatapathLayout.spi(key: old, sender: nodeID), local.underlay, at: t)
                {
                    if !acked { fallbacks += 1 }
                    next.inbound.remove(old)
                }
            }
            // We send older(our key, peer's spi): once both are newer, nothing of ours uses `old` towards it. No
            // fallback here: while the peer advertises `old` it can receive nothing else, so the SA stays.
            for old in live.outbound where old != current {
                if spi.map({ old.isOlder(than: $0) }) == true && old.isOlder(than: current) {
                    next.outbound.remove(old)
                }
            }
            if next != live {
                peers[i].keys = next
                changed.append(i)
            }
        }
        if fallbacks > 0 {
            metrics.fallbackReclaims(fallbacks)
            logger.warning(
                "reclaimed \(fallbacks) SA(s) by fallback: peers never acknowledged but counters stayed still")
        }
        if !changed.isEmpty { _ = await program(slots: changed) }
        for key in Set(keys.keys) where key != current && !peers.entries.contains(where: { $0.keys.all.contains(key) })
        {
            keys[key] = nil
        }
        if phase == .reclaim, !hasOldKeys {
            enter(.idle)
            lastRotationCompletedAt = now()
            if let started = rotationStartedAt {
                metrics.rotationCompleted(duration: now() - started)
                logger.info("rotation to key \(current) complete", metadata: ["duration": "\(now() - started)"])
                rotationStartedAt = nil
            }
        }
    }

    /// Fallback for an inbound SA from a peer that never acknowledges (asked once the fallback timeout since the
    /// advertisement has passed): it may go once its packet counter stood still for the quiet window.
    func fallbackAllowed(_ spi: UInt32, _ destination: IPAddress, at t: Duration) -> Bool {
        let id = XFRMStateID(destination: destination, spi: spi)
        guard let history = counterHistory[id] else { return false }
        return t - history.changedAt >= settings.quietWindow
    }

    // MARK: - Time

    /// Periodic work: peer grace expiry, fallback reclaim, retries, debounced acknowledgements.
    public func tick() async {
        await gate.acquire()
        defer { gate.release() }
        if registryConnected {
            let t = now()
            let expired = peers.entries.compactMap { entry in
                entry.departedAt.map { t - $0 >= settings.peerRemovalGrace } == true ? entry.peer.name : nil
            }
            for name in expired { await removePeer(name) }
        }
        await advance()
        await acknowledgeIfDue()
    }

    /// Publishes `xfrmRevision` when the datapath reflects newer registry state than last published.
    func acknowledgeIfDue() async {
        guard appliedRevision > publishedRevision, currentKey == nil || advertisedKey != nil else { return }
        if let last = lastAcknowledgeAt, now() - last < settings.acknowledgeInterval { return }
        lastAcknowledgeAt = now()
        _ = await publishRecord(spi: spiOnRecord ?? advertisedKey, encryptSpi: encryptKey)
    }
}
