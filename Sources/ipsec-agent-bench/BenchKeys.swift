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

enum BenchKeys {
    /// The `n`th key of the benchmark: key IDs wrap around after 15, the material differs for every `n`.
    static func key(_ n: Int) -> IPsecKey {
        IPsecKey(
            id: KeyID((n - 1) % 15 + 1)!, algorithm: .aesGCM(keyBits: 128, icvBits: 128),
            encryptionKey: SecretBytes((0..<20).map { UInt8(truncatingIfNeeded: $0 * 7 + n) }))
    }
}
