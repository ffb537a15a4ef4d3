import Foundation
import IPsecPrimitives
import Testing
import TestSupport
@testable import Datapath

/// Bad environments and arguments fail with an error that names the problem.
@Suite("Datapath errors", .enabled(if: Privileges.canCreateNamespaces))
struct DatapathErrorTests {
    @Test("a pin directory outside bpffs is reported as such")
    func pinDirectoryNotOnBPFFS() throws {
        let path = "/tmp/ipsa-test-\(getpid())-pins"
        let error = #expect(throws: DatapathError.self) { try BPFDatapath(pinDirectory: path) }
        #expect(error == .bpffsNotMounted(path: "/tmp"))
        #expect(error?.description.contains("not on a bpf filesystem") == true)
        #expect(!FileManager.default.fileExists(atPath: path))
    }

    @Test("a pin directory whose parent is missing names the missing parent")
    func pinDirectoryParentMissing() throws {
        let error = #expect(throws: DatapathError.self) {
            try BPFDatapath(pinDirectory: "/sys/fs/bpf/ipsa-test-missing-\(getpid())/pins")
        }
        #expect(error == .pinDirectory(path: "/sys/fs/bpf/ipsa-test-missing-\(getpid())", errno: ENOENT))
    }

    @Test("attaching to an unknown interface names it")
    func unknownInterface() throws {
        try TestPinDirectory.with { pins in
            let datapath = try BPFDatapath(pinDirectory: pins.path)
            let error = #expect(throws: DatapathError.self) { try datapath.attach(interface: "ipsa-nope0") }
            #expect(error == .interfaceNotFound("ipsa-nope0"))
            #expect(error?.description == "BPF datapath: interface ipsa-nope0 not found")
            #expect(throws: DatapathError.interfaceNotFound("ipsa-nope0")) { try datapath.detach(interface: "ipsa-nope0") }
        }
    }

    static let clang = "/opt/swift/usr/bin/clang"

    @Test("a program the verifier rejects fails to load with the verifier's log",
          .enabled(if: FileManager.default.isExecutableFile(atPath: clang)))
    func verifierRejection() async throws {
        // Reads packet data without a bounds check: the verifier must refuse it.
        let source = """
            #include <linux/bpf.h>
            #include <bpf/bpf_helpers.h>
            SEC("tc") int ipsec_encrypt_select(struct __sk_buff *skb)
            {
                return *(int *)(long)skb->data;
            }
            char LICENSE[] SEC("license") = "GPL";
            """
        let object = try await Self.compile(source)
        try TestPinDirectory.with { pins in
            try FileManager.default.createDirectory(atPath: pins.path, withIntermediateDirectories: true)
            let error = #expect(throws: DatapathError.self) {
                _ = try LoadedBPFObject(objectBytes: object, name: "bad", pinDirectory: pins.path)
            }
            guard case .load(let errno, _, let verifierLog) = error else {
                Issue.record("expected a load error, got \(String(describing: error))")
                return
            }
            #expect(errno == EACCES)
            #expect(verifierLog.contains("invalid access to packet"), "log: \(verifierLog)")
            #expect(error?.description.contains("verifier log (tail):") == true)
        }
    }

    @Test("a pinned map with another definition is refused, naming the map",
          .enabled(if: FileManager.default.isExecutableFile(atPath: clang)))
    func incompatiblePinnedMap() async throws {
        // An older layout of peer_v4 (other key, value and capacity), pinned where the datapath looks.
        let source = """
            #include <linux/bpf.h>
            #include <bpf/bpf_helpers.h>
            struct {
                __uint(type, BPF_MAP_TYPE_LPM_TRIE);
                __uint(max_entries, 10);
                __uint(map_flags, BPF_F_NO_PREALLOC);
                __type(key, __u64);
                __type(value, __u32);
                __uint(pinning, LIBBPF_PIN_BY_NAME);
            } peer_v4 SEC(".maps");
            SEC("tc") int ipsec_encrypt_select(struct __sk_buff *skb)
            {
                __u64 key = 0;
                return bpf_map_lookup_elem(&peer_v4, &key) ? 1 : 0;
            }
            char LICENSE[] SEC("license") = "GPL";
            """
        let object = try await Self.compile(source)
        try TestPinDirectory.with { pins in
            try FileManager.default.createDirectory(atPath: pins.path, withIntermediateDirectories: true)
            let error = #expect(throws: DatapathError.self) {
                // The old object pins its peer_v4 (it lacks the other maps, hence missingObjectPart) …
                _ = try LoadedBPFObject(objectBytes: object, name: "old", pinDirectory: pins.path)
            }
            #expect(error == .missingObjectPart(kind: "map", name: "encrypt_state"))
            #expect(FileManager.default.fileExists(atPath: pins.path + "/peer_v4"))
            // … and the current datapath must refuse it rather than write into it.
            let loadError = #expect(throws: DatapathError.self) { try BPFDatapath(pinDirectory: pins.path) }
            guard case .load(_, let details, _) = loadError else {
                Issue.record("expected a load error, got \(String(describing: loadError))")
                return
            }
            #expect(details.contains("couldn't reuse pinned map") && details.contains("peer_v4"), "details: \(details)")
        }
    }

    /// Compiles a BPF C source with the toolchain's clang, as the build plugin does.
    static func compile(_ source: String) async throws -> [UInt8] {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("ipsa-test-\(getpid())-\(UInt32.random(in: 0...UInt32.max))")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let sourcePath = directory.appendingPathComponent("program.c").path
        let objectPath = directory.appendingPathComponent("program.o").path
        try source.write(toFile: sourcePath, atomically: true, encoding: .utf8)
        try await Shell.run(clang, "-target", "bpf", "-O2", "-g", "-I/usr/include/x86_64-linux-gnu", "-c", sourcePath, "-o", objectPath)
        return try [UInt8](Data(contentsOf: URL(fileURLWithPath: objectPath)))
    }

    @Test("the verifier log excerpt keeps the last lines")
    func verifierLogTail() {
        let log = (1...100).map { "line \($0)" }.joined(separator: "\n") + "\n"
        let tail = LoadedBPFObject.tail(of: log, lines: 3)
        #expect(tail == "line 98\nline 99\nline 100")
    }
}
