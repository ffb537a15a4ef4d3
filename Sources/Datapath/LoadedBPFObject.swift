import CBPF

#if canImport(Glibc)
    import Glibc
#endif

/// The libbpf object behind `BPFDatapath`: the loaded program and its map file descriptors.
///
/// Not `Sendable` (it owns a C pointer): `BPFDatapath` keeps its only reference inside a `Mutex`.
/// Closing it (deinit) closes the program and map fds; pinned maps and tc attachments stay.
final class LoadedBPFObject {
    private let handle: OpaquePointer
    let programFD: Int32
    let programID: UInt32
    let stateMapFD: Int32
    let peerV4MapFD: Int32
    let peerV6MapFD: Int32
    let countersMapFD: Int32

    /// Opens the embedded object and loads it, creating the maps pinned under `pinDirectory` or reusing
    /// the ones already pinned there.
    init(objectBytes: [UInt8], name: String, pinDirectory: String) throws(DatapathError) {
        var openError: Int32 = 0
        let opened = objectBytes.withUnsafeBytes { bytes in
            cbpf_object_open(bytes.baseAddress, bytes.count, name, pinDirectory, &openError)
        }
        guard let handle = opened else {
            throw .objectOpen(errno: -openError, details: LoadedBPFObject.takeMessages())
        }
        let loaded = cbpf_object_load(handle)
        guard loaded == 0 else {
            let log = String(cString: cbpf_object_log(handle))
            let details = LoadedBPFObject.takeMessages()
            cbpf_object_close(handle)
            if loaded == -EPERM, geteuid() != 0 { throw .notRoot(operation: "loading the BPF program") }
            throw .load(errno: -loaded, details: details, verifierLog: LoadedBPFObject.tail(of: log))
        }
        do throws(DatapathError) {
            programFD = try LoadedBPFObject.descriptor(
                cbpf_object_program_fd(handle, IPSEC_PROGRAM_NAME), "program", IPSEC_PROGRAM_NAME)
            stateMapFD = try LoadedBPFObject.descriptor(
                cbpf_object_map_fd(handle, IPSEC_MAP_ENCRYPT_STATE), "map", IPSEC_MAP_ENCRYPT_STATE)
            peerV4MapFD = try LoadedBPFObject.descriptor(
                cbpf_object_map_fd(handle, IPSEC_MAP_PEER_V4), "map", IPSEC_MAP_PEER_V4)
            peerV6MapFD = try LoadedBPFObject.descriptor(
                cbpf_object_map_fd(handle, IPSEC_MAP_PEER_V6), "map", IPSEC_MAP_PEER_V6)
            countersMapFD = try LoadedBPFObject.descriptor(
                cbpf_object_map_fd(handle, IPSEC_MAP_COUNTERS), "map", IPSEC_MAP_COUNTERS)
            var id: UInt32 = 0
            let result = cbpf_program_id(programFD, &id)
            guard result == 0 else {
                throw DatapathError.load(errno: -result, details: "reading the program id", verifierLog: "")
            }
            programID = id
        } catch {
            cbpf_object_close(handle)
            throw error
        }
        self.handle = handle
    }

    deinit {
        cbpf_object_close(handle)
    }

    /// The libbpf warnings captured on this thread since the last shim call.
    static func takeMessages() -> String {
        var buffer = [CChar](repeating: 0, count: 4096)
        let length = cbpf_take_messages(&buffer, buffer.count)
        let text = String(decoding: buffer.prefix(length).map { UInt8(bitPattern: $0) }, as: UTF8.self)
        return text.split(separator: "\n").joined(separator: "; ")
    }

    /// The last lines of a verifier log: where the verifier gave up and why.
    static func tail(of log: String, lines: Int = 25, characters: Int = 4000) -> String {
        let kept = log.split(separator: "\n", omittingEmptySubsequences: true).suffix(lines).joined(separator: "\n")
        return String(kept.suffix(characters))
    }

    private static func descriptor(_ fd: Int32, _ kind: String, _ name: String) throws(DatapathError) -> Int32 {
        guard fd >= 0 else { throw .missingObjectPart(kind: kind, name: name) }
        return fd
    }
}
