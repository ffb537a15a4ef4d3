import Agent
import CoreMetrics
import Datapath
import Foundation
import IPsecPrimitives
import Keys
import Logging
import Registry
import ServiceLifecycle
import XFRM

/// `ipsec-agent run`: wires the key watcher, the registry client, the controller, the reconciler and the XFRM
/// monitor around one `AgentController`, in the start-up order load → XFRM → advertise → BPF.
///
/// SIGTERM ends the tasks and leaves the datapath running: SAs, policies, the pinned BPF maps and the attached
/// program stay in the kernel, so traffic keeps flowing (and stays encrypted) while the agent is down.
public struct AgentDaemon: Service {
    public let configuration: AgentConfiguration
    public let registry: any NodeRegistry
    public let handle: AgentHandle
    public let metricsFactory: (any MetricsFactoryProvider)?
    public let logger: Logger

    public init(
        configuration: AgentConfiguration, registry: any NodeRegistry, handle: AgentHandle,
        metricsFactory: (any MetricsFactoryProvider)? = nil, logger: Logger
    ) {
        self.configuration = configuration
        self.registry = registry
        self.handle = handle
        self.metricsFactory = metricsFactory
        self.logger = logger
    }

    /// Runs until a graceful shutdown (SIGTERM/SIGINT through the service group) or cancellation, then returns
    /// normally in every phase: before registration, while the registry is unreachable, idle or mid-rotation.
    /// Work under way is cancelled; nothing waits on a thread.
    public func run() async throws {
        do {
            try await cancelWhenGracefulShutdown {
                try await self.runUntilCancelled()
            }
        } catch  where Task.isShuttingDownGracefully || Task.isCancelled {
            // Cancellation surfaces as whatever the interrupted call throws (CancellationError, a cancelled HTTP
            // request, …): while stopping, that is the expected way out, not a failure.
            logger.debug("stopping", metadata: ["interrupted": "\(error)"])
        }
        logger.info("agent stopped; the datapath keeps running as programmed")
    }

    private func runUntilCancelled() async throws {
        let config = configuration
        let bootID = try Self.readBootID(config.bootIDFile)
        let namespacePath = config.networkNamespace.map { $0.hasPrefix("/") ? $0 : "/var/run/netns/\($0)" }
        let kernel = XFRMClientKernel(client: try XFRMClient(networkNamespacePath: namespacePath))
        if config.xfrmPolicyHashing {
            do {
                let (before, after) = try await kernel.hashPolicies(podCIDRs: config.podCIDRs)
                if before != after {
                    logger.info(
                        "XFRM policy hash thresholds lowered so the agent's policies are hashed",
                        metadata: ["before": "\(before)", "after": "\(after)"])
                }
            } catch {
                logger.warning(
                    "could not set the XFRM policy hash thresholds (policies stay on the kernel's inexact lists: slower at scale, still correct)",
                    metadata: ["error": "\(error)"])
            }
        }
        let datapath = try BPFDatapath(pinDirectory: config.bpfPinDirectory)
        for interface in config.interfaces {
            try datapath.attach(interface: interface)
            logger.info("BPF program attached", metadata: ["interface": "\(interface)"])
        }
        handle.update {
            $0.kernel = kernel; $0.encryptMap = datapath
        }

        let client = RegistryClient(
            registry: registry, nodeName: config.nodeName,
            logger: Logger(label: "ipsec-agent.registry"))
        handle.update { $0.registryClient = client }

        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { await client.run() }

            // Our last published record carries what we advertised before a restart: re-publish exactly that
            // (never a new key ID) to learn our node ID.
            let own = await self.lastOwnRecord()
            var base = NodeRecord(
                name: config.nodeName, nodeID: own?.nodeID ?? 0, ipv4: config.underlayIPv4,
                ipv6: config.underlayIPv6, podCIDRs: config.podCIDRs, bootID: bootID,
                sequence: own?.sequence ?? 0)
            if let own, own.bootID == bootID {
                base.spi = own.spi
                base.encryptSpi = own.encryptSpi
                base.keyFingerprint = own.keyFingerprint
                base.xfrmRevision = own.xfrmRevision
            }
            let publisher = RegistryRecordPublisher(client: client, base: base)
            let registered = try await self.register(base, publisher: publisher)
            self.logger.info("registered", metadata: ["nodeID": "\(registered.nodeID)"])

            let local = LocalNode(
                name: config.nodeName, nodeID: registered.nodeID, underlay: config.underlay,
                podCIDRs: config.podCIDRs, bootID: bootID)
            var settings = AgentController.Settings()
            settings.fallbackTimeout = config.rotationFallbackTimeout
            settings.quietWindow = config.fallbackQuietWindow
            settings.peerRemovalGrace = config.peerRemovalGrace
            settings.underlayMTU = self.underlayMTU()
            settings.claims = ClaimPolicy(
                minimumIPv4PrefixLength: config.minimumPodPrefixIPv4,
                minimumIPv6PrefixLength: config.minimumPodPrefixIPv6)
            let clock = ContinuousClock()
            let origin = clock.now
            let metrics = AgentMetrics(factory: self.metricsFactory?.factory)
            let controller = AgentController(
                local: local, kernel: kernel, encryptMap: datapath, publisher: publisher,
                keyOperations: .standard, settings: settings, now: { clock.now - origin },
                logger: self.logger, metrics: metrics)
            try await controller.adopt(ownRecord: own?.bootID == bootID ? registered : nil)
            self.handle.update { $0.controller = controller }

            // Keys: the watcher reports the current file first, then every replacement.
            let watcher = try KeyFileWatcher(
                path: config.keyFile,
                configuration: .init(maximumJitter: config.rotationJitter),
                logger: Logger(label: "ipsec-agent.keys"))
            self.handle.update { $0.insecureKeyFile = { watcher.insecurePermissions } }
            group.addTask {
                defer { watcher.stop() }
                var checkedMTU: ESPTunnelMTU?
                for await event in watcher.events {
                    switch event {
                    case .key(let key):
                        await controller.keyFileChanged(.success(key))
                        // The current key's (a refused key file leaves it as it was).
                        if let mtu = await controller.tunnelMTU, mtu != checkedMTU {
                            checkedMTU = mtu
                            self.checkPodInterfaces(mtu, metrics: metrics)
                        }
                    case .error(let error): await controller.keyFileChanged(.failure(error))
                    }
                    MemoryTuning.releaseFreeMemory()
                }
            }

            // Peers: one pass over all of them per view; views are coalesced while a pass runs.
            group.addTask {
                for await view in client.views {
                    await controller.peersChanged(
                        Array(view.peers.values), connected: view.connectionState == .connected)
                }
            }

            // Time: acknowledgements, grace periods, retries.
            group.addTask {
                while !Task.isCancelled {
                    try await Task.sleep(for: .milliseconds(500))
                    await controller.tick()
                }
            }

            // Reconcile: periodic (jittered ±10%), and soon after the kernel reports a deletion or a lost event.
            let monitor = try? XFRMMonitor(networkNamespacePath: namespacePath, bufferingPolicy: .bufferingNewest(1024))
            let (wakeups, wake) = AsyncStream.makeStream(of: Void.self, bufferingPolicy: .bufferingNewest(1))
            if let monitor {
                group.addTask {
                    defer { monitor.stop() }
                    for await event in monitor.events {
                        switch event {
                        case .stateDeleted(let s) where DatapathLayout.owns(s): wake.yield()
                        case .policyDeleted(let p) where DatapathLayout.owns(p): wake.yield()
                        case .resyncNeeded, .stateExpired: wake.yield()
                        default: continue
                        }
                    }
                }
            } else {
                self.logger.warning("XFRM monitor unavailable; repairs wait for the periodic reconcile")
            }
            // The periodic trigger shares the coalescing stream with the monitor's wake-ups.
            group.addTask {
                while !Task.isCancelled {
                    try await Task.sleep(for: config.reconcileInterval * Double.random(in: 0.9...1.1))
                    wake.yield()
                }
            }
            group.addTask {
                for await _ in wakeups {
                    try await Task.sleep(for: .milliseconds(200))  // let a burst of deletions finish
                    await controller.reconcile()
                    MemoryTuning.releaseFreeMemory()
                }
            }
            try await group.next()
            group.cancelAll()
        }
    }

    /// The configured `underlayMTU`, else the MTU of the interface holding the underlay address, else 1500.
    private func underlayMTU() -> Int {
        if let configured = configuration.underlayMTU { return configured }
        if configuration.networkNamespace == nil, let name = LinkMTU.interface(holding: configuration.underlay),
            let mtu = LinkMTU.mtu(of: name)
        {
            return mtu
        }
        logger.notice(
            "underlay interface MTU unknown (no interface here holds the underlay address); assuming 1500 (set underlayMTU)",
            metadata: ["underlay": "\(configuration.underlay)"])
        return 1500
    }

    /// Logs the pod MTU for the key's algorithm, records it (`ipsec_pod_mtu_bytes`), and warns about each pod
    /// interface whose MTU is larger: full-size packets from its pods would be refused with ICMP "fragmentation
    /// needed" (path MTU discovery) instead of being encrypted, or dropped where ICMP is filtered.
    private func checkPodInterfaces(_ mtu: ESPTunnelMTU, metrics: AgentMetrics) {
        logger.info("ESP tunnel MTU", metadata: ["podMTU": "\(mtu.podMTU)", "arithmetic": "\(mtu)"])
        metrics.podMTU(mtu.podMTU)
        for interface in configuration.interfaces {
            guard let have = LinkMTU.mtu(of: interface), have > mtu.podMTU else { continue }
            logger.warning(
                "pod interface MTU above the ESP tunnel MTU: set the pods' MTU (or their routes' mtu) to the pod MTU",
                metadata: ["interface": "\(interface)", "mtu": "\(have)", "podMTU": "\(mtu.podMTU)"])
        }
    }

    /// This node's record as the registry holds it (nil when absent or unreachable within a few seconds).
    private func lastOwnRecord() async -> NodeRecord? {
        let registry = self.registry
        let name = configuration.nodeName
        return await withTaskGroup(of: NodeRecord??.self) { group in
            group.addTask { (try? await registry.list())?.records.first { $0.name == name } }
            group.addTask {
                try? await Task.sleep(for: .seconds(5))
                return .some(nil)
            }
            let first = await group.next() ?? nil
            group.cancelAll()
            return first ?? nil
        }
    }

    /// Publishes the start-up record until the registry acknowledges it; the datapath keeps its last state
    /// meanwhile.
    private func register(_ record: NodeRecord, publisher: RegistryRecordPublisher) async throws -> NodeRecord {
        var delay = Duration.seconds(1)
        while true {
            do {
                return try await publisher.publish(record)
            } catch is CancellationError {
                throw CancellationError()
            } catch {
                logger.warning("registry not reachable yet; datapath left as it is", metadata: ["error": "\(error)"])
                try await Task.sleep(for: delay)
                delay = min(delay * 2, .seconds(8))
            }
        }
    }

    static func readBootID(_ path: String) throws -> String {
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else {
            throw AgentConfiguration.Error(file: path, line: nil, message: "cannot read the boot ID")
        }
        let id = text.trimmingCharacters(in: .whitespacesAndNewlines)
        guard !id.isEmpty, id.count <= 64 else {
            throw AgentConfiguration.Error(file: path, line: nil, message: "the boot ID is empty or too long")
        }
        return id
    }
}

/// Supplies the metrics factory the daemon's metrics go to (the admin server's Prometheus registry).
public protocol MetricsFactoryProvider: Sendable {
    var factory: any MetricsFactory { get }
}

extension TelemetryRefresher: MetricsFactoryProvider {
    public var factory: any MetricsFactory { catalogFactory }
}

extension KeyOperations {
    /// HKDF per-pair keys, SHA-256 fingerprints and the key-file rotation rules.
    public static let standard = KeyOperations(
        derive: { key, source, destination, sourceBoot, destinationBoot in
            KeyDerivation.pairKey(
                for: key, source: source, destination: destination,
                sourceBootID: sourceBoot, destinationBootID: destinationBoot)
        },
        fingerprint: { $0.fingerprint },
        checkRotation: { new, current in _ = try KeyRotationRule.check(new: new, current: current) })
}
