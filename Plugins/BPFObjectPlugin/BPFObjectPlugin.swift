import Foundation
import PackagePlugin

/// Compiles `bpf/encrypt.c` with clang's BPF target and hands the object to the Datapath target as a
/// generated Swift file (`BPFObject.bpfObjectBase64`), so a fresh `swift build` needs no manual step and
/// no compiled object lives in the repository. Reruns whenever the program, the shared map header or
/// the build script changes.
@main
struct BPFObjectPlugin: BuildToolPlugin {
    func createBuildCommands(context: PluginContext, target: any Target) async throws -> [Command] {
        let packageDirectory = context.package.directoryURL
        let script = packageDirectory.appending(path: "bpf/build-object.sh")
        let source = packageDirectory.appending(path: "bpf/encrypt.c")
        let includeDirectory = packageDirectory.appending(path: "Sources/CBPF/include")
        let mapsHeader = includeDirectory.appending(path: "ipsec_maps.h")
        let output = context.pluginWorkDirectoryURL.appending(path: "BPFObject.swift")

        return [
            .buildCommand(
                displayName: "Compiling BPF program \(source.lastPathComponent)",
                executable: URL(fileURLWithPath: "/bin/sh"),
                arguments: [script.path, try clang(context).path, source.path, includeDirectory.path, output.path],
                inputFiles: [script, source, mapsHeader],
                outputFiles: [output]
            )
        ]
    }

    /// The toolchain's clang (it has the `bpf` target); /opt/swift/usr/bin/clang when the lookup fails.
    private func clang(_ context: PluginContext) throws -> URL {
        if let tool = try? context.tool(named: "clang") {
            return tool.url
        }
        let fallback = URL(fileURLWithPath: "/opt/swift/usr/bin/clang")
        guard FileManager.default.isExecutableFile(atPath: fallback.path) else {
            throw BPFObjectPluginError.clangNotFound
        }
        return fallback
    }
}

enum BPFObjectPluginError: Error, CustomStringConvertible {
    case clangNotFound

    var description: String {
        "BPFObjectPlugin: no clang with the bpf target found (looked up 'clang' in the toolchain and /opt/swift/usr/bin/clang)"
    }
}
