import CBPF
import IPsecPrimitives
import Synchronization

#if canImport(FoundationEssentials)
    import FoundationEssentials
#else
    import Foundation
#endif
#if canImport(Glibc)
    import Glibc
#endif

/// The encrypt-selection datapath: the `ipsec_encrypt_select` tc program and its pinned maps.
///
/// `init` loads the program embedded at build time (bpf/encrypt.c), creating the maps pinned under
/// `pinDirectory` or reusing the ones a previous instance pinned there, so key state survives agent
/// restarts. `attach(interface:)` puts the program on the interface's clsact ingress hook.
/// As an `EncryptMap` it writes `encrypt_state` and the `peer_v4`/`peer_v6` LPM tries; the program
/// reads them for every packet. All calls are short synchronous syscalls (no blocking I/O).
public final class BPFDatapath: EncryptMap {
    public static let defaultPinDirectory = "/sys/fs/bpf/ipsec-agent"
    /// The tc filter this datapath owns on each interface (clsact ingress, handle/priority).
    public static let tcHandle: UInt32 = 0xE5
    public static let tcPriority: UInt32 = 1
    /// Capacity of each peer trie (IPv4 and IPv6 separately).
    public static let maxPeerPrefixes = Int(IPSEC_MAX_PEER_PREFIXES)

    public let pinDirectory: String
    /// The kernel's id of the program this instance loaded (what `tc filter show` and bpftool print).
    public let programID: UInt32
    let object: Mutex<LoadedBPFObject>

    /// Loads the program and creates or reuses the maps pinned in `pinDirectory` (created if missing,
    /// it must be on a bpf filesystem).
    public init(pinDirectory: String = BPFDatapath.defaultPinDirectory) throws {
        guard geteuid() == 0 else { throw DatapathError.notRoot(operation: "loading the BPF datapath") }
        try BPFDatapath.preparePinDirectory(pinDirectory)
        guard let bytes = Data(base64Encoded: EmbeddedBPFObject.bpfObjectBase64) else {
            throw DatapathError.objectOpen(
                errno: EINVAL, details: "the embedded object is not valid base64 (build problem)")
        }
        let loaded = try LoadedBPFObject(
            objectBytes: Array(bytes), name: EmbeddedBPFObject.name, pinDirectory: pinDirectory)
        self.pinDirectory = pinDirectory
        self.programID = loaded.programID
        self.object = Mutex(loaded)
    }

    // MARK: Attach points

    /// Attaches the program to the clsact ingress hook of `interface` (creating the clsact qdisc if
    /// needed), replacing the filter of an earlier instance. Acts in the calling thread's network namespace.
    public func attach(interface: String) throws {
        try attach(ifindex: BPFDatapath.ifindex(of: interface), label: interface)
    }

    public func attach(ifindex: Int32) throws {
        try attach(ifindex: ifindex, label: "ifindex \(ifindex)")
    }

    /// Removes this datapath's filter from `interface` (any instance's: it is matched by handle and
    /// priority). Leaves the clsact qdisc. Succeeds if no filter was attached.
    public func detach(interface: String) throws {
        let ifindex = try BPFDatapath.ifindex(of: interface)
        let result = cbpf_tc_detach_ingress(ifindex, BPFDatapath.tcHandle, BPFDatapath.tcPriority)
        guard result == 0 || result == -ENOENT else {
            throw DatapathError.detach(interface: interface, errno: -result, details: LoadedBPFObject.takeMessages())
        }
    }

    /// The id of the program attached as this datapath's filter on `interface`, nil if none.
    public func attachedProgramID(interface: String) throws -> UInt32? {
        let ifindex = try BPFDatapath.ifindex(of: interface)
        var id: UInt32 = 0
        let result = cbpf_tc_query_ingress(ifindex, BPFDatapath.tcHandle, BPFDatapath.tcPriority, &id)
        if result == -ENOENT || result == -EINVAL { return nil }
        guard result == 0 else {
            throw DatapathError.attach(interface: interface, errno: -result, details: "querying the filter")
        }
        return id
    }

    private func attach(ifindex: Int32, label: String) throws {
        let result = object.withLock { object in
            cbpf_tc_attach_ingress(ifindex, object.programFD, BPFDatapath.tcHandle, BPFDatapath.tcPriority)
        }
        guard result == 0 else {
            if result == -ENODEV { throw DatapathError.interfaceNotFound(label) }
            throw DatapathError.attach(interface: label, errno: -result, details: LoadedBPFObject.takeMessages())
        }
    }

    // MARK: EncryptMap

    public func setLocalSPI(_ spi: KeyID?) throws {
        var key: UInt32 = 0
        var value = ipsec_encrypt_state(local_spi: UInt32(spi?.rawValue ?? 0))
        let result = object.withLock { cbpf_map_update($0.stateMapFD, &key, &value, UInt64(BPF_ANY)) }
        guard result == 0 else {
            throw DatapathError.mapOperation(
                map: IPSEC_MAP_ENCRYPT_STATE, operation: "update", key: "0", errno: -result)
        }
    }

    public func localSPI() throws -> KeyID? {
        var key: UInt32 = 0
        var value = ipsec_encrypt_state()
        let result = object.withLock { cbpf_map_lookup($0.stateMapFD, &key, &value) }
        guard result == 0 else {
            throw DatapathError.mapOperation(
                map: IPSEC_MAP_ENCRYPT_STATE, operation: "lookup", key: "0", errno: -result)
        }
        if value.local_spi == 0 { return nil }
        guard let spi = KeyID(value.local_spi) else {
            throw DatapathError.corruptEntry(
                map: IPSEC_MAP_ENCRYPT_STATE, detail: "local SPI \(value.local_spi) is outside 1…15")
        }
        return spi
    }

    public func upsertPeer(_ prefix: IPPrefix, _ entry: PeerEncryptEntry) throws {
        let key = PeerMapKey(prefix)
        var value = ipsec_peer_value(node_id: entry.nodeID, spi: entry.peerSPI.rawValue, reserved: 0)
        let result = object.withLock { object in
            key.withUnsafeBytes {
                cbpf_map_update(object.peerMapFD(prefix.family), $0.baseAddress, &value, UInt64(BPF_ANY))
            }
        }
        guard result == 0 else {
            throw DatapathError.mapOperation(
                map: BPFDatapath.peerMapName(prefix.family), operation: "update", key: prefix.description,
                errno: -result)
        }
    }

    /// Removes the entry for exactly `prefix`; succeeds if there was none.
    public func deletePeer(_ prefix: IPPrefix) throws {
        let key = PeerMapKey(prefix)
        let result = object.withLock { object in
            key.withUnsafeBytes { cbpf_map_delete(object.peerMapFD(prefix.family), $0.baseAddress) }
        }
        guard result == 0 || result == -ENOENT else {
            throw DatapathError.mapOperation(
                map: BPFDatapath.peerMapName(prefix.family), operation: "delete", key: prefix.description,
                errno: -result)
        }
    }

    public func peers() throws -> [IPPrefix: PeerEncryptEntry] {
        try object.withLock { object in
            var peers: [IPPrefix: PeerEncryptEntry] = [:]
            for family in [IPAddress.Family.v4, .v6] {
                try BPFDatapath.readPeers(mapFD: object.peerMapFD(family), family: family, into: &peers)
            }
            return peers
        }
    }

    // MARK: Observability

    /// The program's packet counters, summed over CPUs.
    public func counters() throws -> EncryptCounters {
        let cpus = Int(cbpf_possible_cpus())
        guard cpus > 0 else {
            throw DatapathError.mapOperation(
                map: IPSEC_MAP_COUNTERS, operation: "count CPUs for", key: "-", errno: -Int32(cpus))
        }
        func sum(_ index: UInt32) throws -> UInt64 {
            var key = index
            var values = [UInt64](repeating: 0, count: cpus)
            let result = object.withLock { cbpf_map_lookup($0.countersMapFD, &key, &values) }
            guard result == 0 else {
                throw DatapathError.mapOperation(
                    map: IPSEC_MAP_COUNTERS, operation: "lookup", key: String(index), errno: -result)
            }
            return values.reduce(0, &+)
        }
        return EncryptCounters(
            marked: try sum(IPSEC_COUNTER_MARKED.rawValue),
            unmarked: try sum(IPSEC_COUNTER_UNMARKED.rawValue),
            notReady: try sum(IPSEC_COUNTER_NOT_READY.rawValue)
        )
    }

    /// Runs the program once on an Ethernet frame (`BPF_PROG_TEST_RUN`) against the live maps, without
    /// sending anything: what mark would this packet get? Counters count every run. `repeat` > 1 runs it
    /// that many times in the kernel, for a per-packet cost figure (`averageNanoseconds`).
    public func run(frame: [UInt8], mark: UInt32 = 0, repeat: UInt32 = 1) throws -> TestRunResult {
        var verdict: UInt32 = 0
        var markOut: UInt32 = 0
        var duration: UInt32 = 0
        let result = object.withLock { object in
            frame.withUnsafeBytes {
                cbpf_tc_test_run(
                    object.programFD, $0.baseAddress, UInt32($0.count), mark, `repeat`, &verdict, &markOut, &duration)
            }
        }
        guard result == 0 else { throw DatapathError.testRun(errno: -result) }
        return TestRunResult(verdict: verdict, mark: markOut, averageNanoseconds: duration)
    }

    // MARK: Pins

    /// Unpins the datapath's maps and removes `pinDirectory` (when empty). Attached programs keep
    /// their maps alive until detached; a later `init` then starts from empty maps.
    public static func removePins(pinDirectory: String = BPFDatapath.defaultPinDirectory) throws {
        for name in [IPSEC_MAP_ENCRYPT_STATE, IPSEC_MAP_PEER_V4, IPSEC_MAP_PEER_V6, IPSEC_MAP_COUNTERS] {
            let path = "\(pinDirectory)/\(name)"
            if unlink(path) != 0, errno != ENOENT {
                throw DatapathError.pinDirectory(path: path, errno: errno)
            }
        }
        if rmdir(pinDirectory) != 0, errno != ENOENT {
            throw DatapathError.pinDirectory(path: pinDirectory, errno: errno)
        }
    }

    // MARK: Helpers

    private static func preparePinDirectory(_ path: String) throws {
        var parent = path
        while parent.hasSuffix("/"), parent.count > 1 { parent.removeLast() }
        if let slash = parent.lastIndex(of: "/") { parent = String(parent[..<slash]) }
        if parent.isEmpty { parent = "/" }
        let onBPFFilesystem = cbpf_is_bpffs(parent)
        guard onBPFFilesystem >= 0 else { throw DatapathError.pinDirectory(path: parent, errno: -onBPFFilesystem) }
        guard onBPFFilesystem == 1 else { throw DatapathError.bpffsNotMounted(path: parent) }
        if mkdir(path, 0o700) != 0, errno != EEXIST {
            throw DatapathError.pinDirectory(path: path, errno: errno)
        }
    }

    private static func ifindex(of interface: String) throws -> Int32 {
        let index = if_nametoindex(interface)
        guard index != 0 else { throw DatapathError.interfaceNotFound(interface) }
        return Int32(index)
    }

    static func peerMapName(_ family: IPAddress.Family) -> String {
        family == .v4 ? IPSEC_MAP_PEER_V4 : IPSEC_MAP_PEER_V6
    }

    /// Entries per batched read.
    static let readBatch = 1024

    private static func readPeers(
        mapFD: Int32, family: IPAddress.Family, into peers: inout [IPPrefix: PeerEncryptEntry]
    ) throws {
        if try readPeersBatched(mapFD: mapFD, family: family, into: &peers) { return }
        try readPeersOneByOne(mapFD: mapFD, family: family, into: &peers)
    }

    /// `BPF_MAP_LOOKUP_BATCH`: one system call per 1,024 entries instead of two per entry (a reconcile pass reads
    /// the whole map). False, with nothing read, on kernels whose LPM tries have no batch operations.
    static func readPeersBatched(
        mapFD: Int32, family: IPAddress.Family,
        into peers: inout [IPPrefix: PeerEncryptEntry]
    ) throws -> Bool {
        let mapName = peerMapName(family)
        let keySize = PeerMapKey.size(family)
        var keys = [UInt8](repeating: 0, count: keySize * readBatch)
        var values = [ipsec_peer_value](repeating: ipsec_peer_value(), count: readBatch)
        var cursor = [UInt8](repeating: 0, count: keySize)
        var next = [UInt8](repeating: 0, count: keySize)
        var started = false
        var found: [IPPrefix: PeerEncryptEntry] = [:]
        while true {
            var count = UInt32(readBatch)
            let result = keys.withUnsafeMutableBytes { k in
                values.withUnsafeMutableBytes { v in
                    cursor.withUnsafeMutableBytes { c in
                        next.withUnsafeMutableBytes { n in
                            cbpf_map_lookup_batch(
                                mapFD, started ? c.baseAddress : nil, n.baseAddress, k.baseAddress,
                                v.baseAddress, &count)
                        }
                    }
                }
            }
            if !started, result == -EINVAL || result == -EOPNOTSUPP || result == -524 /* ENOTSUPP */ { return false }
            guard result == 0 || result == -ENOENT else {
                throw DatapathError.mapOperation(
                    map: mapName, operation: "batch lookup", key: started ? "next batch" : "start",
                    errno: -result)
            }
            for i in 0..<Int(count) {
                let key = PeerMapKey(family: family, bytes: keys[(i * keySize)..<((i + 1) * keySize)])
                guard let prefix = key.prefix else {
                    throw DatapathError.corruptEntry(map: mapName, detail: "a key that is not a valid prefix")
                }
                guard let spi = KeyID(values[i].spi) else {
                    throw DatapathError.corruptEntry(
                        map: mapName, detail: "\(prefix): peer SPI \(values[i].spi) is outside 1…15")
                }
                found[prefix] = PeerEncryptEntry(nodeID: values[i].node_id, peerSPI: spi)
            }
            if result == -ENOENT || count == 0 { break }
            swap(&cursor, &next)
            started = true
        }
        peers.merge(found) { _, new in new }
        return true
    }

    static func readPeersOneByOne(
        mapFD: Int32, family: IPAddress.Family,
        into peers: inout [IPPrefix: PeerEncryptEntry]
    ) throws {
        let mapName = peerMapName(family)
        var current: PeerMapKey? = nil
        while true {
            var next = PeerMapKey(empty: family)
            let step = next.withUnsafeMutableBytes { nextBytes in
                if let current {
                    current.withUnsafeBytes { cbpf_map_next_key(mapFD, $0.baseAddress, nextBytes.baseAddress) }
                } else {
                    cbpf_map_next_key(mapFD, nil, nextBytes.baseAddress)
                }
            }
            if step == -ENOENT { return }
            guard step == 0 else {
                throw DatapathError.mapOperation(
                    map: mapName, operation: "iterate", key: current?.prefix?.description ?? "start", errno: -step)
            }
            guard let prefix = next.prefix else {
                throw DatapathError.corruptEntry(map: mapName, detail: "a key that is not a valid prefix")
            }
            var value = ipsec_peer_value()
            let lookup = next.withUnsafeBytes { cbpf_map_lookup(mapFD, $0.baseAddress, &value) }
            if lookup == 0 {
                guard let spi = KeyID(value.spi) else {
                    throw DatapathError.corruptEntry(
                        map: mapName, detail: "\(prefix): peer SPI \(value.spi) is outside 1…15")
                }
                peers[prefix] = PeerEncryptEntry(nodeID: value.node_id, peerSPI: spi)
            } else if lookup != -ENOENT {  // deleted by another writer since get_next_key: skip it
                throw DatapathError.mapOperation(
                    map: mapName, operation: "lookup", key: prefix.description, errno: -lookup)
            }
            current = next
        }
    }
}

extension LoadedBPFObject {
    func peerMapFD(_ family: IPAddress.Family) -> Int32 {
        family == .v4 ? peerV4MapFD : peerV6MapFD
    }
}
