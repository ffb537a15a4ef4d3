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
    func verifierRejection() throws {
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
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("ipsa-test-\(getpid())-\(UInt32.random(in: 0...UInt32.max))")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let sourcePath = directory.appendingPathComponent("bad.c").path
        let objectPath = directory.appendingPathComponent("bad.o").path
        try source.write(toFile: sourcePath, atomically: true, encoding: .utf8)
        try Shell.run(Self.clang, "-target", "bpf", "-O2", "-g", "-I/usr/include/x86_64-linux-gnu", "-c", sourcePath, "-o", objectPath)
        let object = try [UInt8](Data(contentsOf: URL(fileURLWithPath: objectPath)))

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

    @Test("the verifier log excerpt keeps the last lines")
    func verifierLogTail() {
        let log = (1...100).map { "line \($0)" }.joined(separator: "\n") + "\n"
        let tail = LoadedBPFObject.tail(of: log, lines: 3)
        #expect(tail == "line 98\nline 99\nline 100")
    }
}
