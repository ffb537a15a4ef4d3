import Agent
import AgentDaemon
import ArgumentParser
import Datapath
import Foundation
import IPsecPrimitives
import Keys
import Logging
import Prometheus
import Registry
import Synchronization
import XFRM

/// A throw-away network namespace (`ip netns add`), deleted by `destroy()`.
struct BenchNamespace {
    let name: String
    var path: String { "/var/run/netns/\(name)" }
    init(_ prefix: String) throws {
        name = "\(prefix)-\(getpid())"
        _ = BenchNamespace.ip(["netns", "del", name])
        guard BenchNamespace.ip(["netns", "add", name]) == 0 else {
            throw ValidationError("cannot create netns \(name) (root?)")
        }
    }
    func destroy() { _ = BenchNamespace.ip(["netns", "del", name]) }
    static func ip(_ args: [String]) -> Int32 {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        p.arguments = ["ip"] + args
        p.standardError = FileHandle.nullDevice
        guard (try? p.run()) != nil else { return -1 }
        p.waitUntilExit()
        return p.terminationStatus
    }
}
