import IPsecPrimitives
import XFRM

/// The kernel's XFRM database as the agent uses it. Production: `XFRMClient` on a dedicated thread;
/// tests: an in-memory fake. Implementations return only objects the agent owns (`DatapathLayout.owns`).
public protocol XFRMKernel: Sendable {
    /// Applies a batch; one result per request, in order. One failure does not stop the others. Failures are
    /// `XFRMKernelError`s.
    func apply(_ requests: [XFRMRequest]) async -> [Result<Void, any Error>]
    /// `apply` without waiting: starts the batch and hands its results to `completion`, on any thread. The
    /// controller pipelines batches with it: it builds the next while the kernel applies this one, and submits
    /// it before the previous one completes (batches touch disjoint peers, so their relative order does not
    /// matter; a serial queue keeps it anyway). An adapter with a thread of its own should implement it
    /// directly: the default runs `apply` in a task, one more thread hand-off per batch.
    func submit(_ requests: [XFRMRequest], completion: @escaping @Sendable ([Result<Void, any Error>]) -> Void)
    /// The agent's own SAs, with lifetime counters.
    func ownedStates() async throws -> [XFRMState]
    /// The agent's own policies.
    func ownedPolicies() async throws -> [XFRMPolicy]
    /// One SA by identity (nil if absent), for `trace`.
    func state(_ id: XFRMStateID) async throws -> XFRMState?
    /// One policy by identity (nil if absent), for `trace`.
    func policy(_ id: XFRMPolicyID) async throws -> XFRMPolicy?
}

extension XFRMKernel {
    public func submit(_ requests: [XFRMRequest], completion: @escaping @Sendable ([Result<Void, any Error>]) -> Void) {
        Task { completion(await apply(requests)) }
    }
}

/// How an `XFRMKernel` reports a failed request: the two outcomes the controller treats specially, and the rest.
public enum XFRMKernelError: Error, Equatable, CustomStringConvertible {
    /// The object exists already (an add after a restart or a lost ack): the controller counts it as done.
    case alreadyExists
    /// The object is gone already (a delete after an external flush): the controller counts it as done.
    case notFound
    /// Anything else, with the kernel's words (never key material).
    case failed(String)

    public var description: String {
        switch self {
        case .alreadyExists: "already exists"
        case .notFound: "not found"
        case .failed(let message): message
        }
    }
}

/// Publishes this node's registry record; returns the stored record (with the registry's revision) once the
/// registry acknowledged it. Production: `RegistryClient`.
public protocol RecordPublisher: Sendable {
    func publish(_ record: NodeRecordUpdate) async throws -> Int64
}

/// The fields of this node's record the agent controls.
public struct NodeRecordUpdate: Hashable, Sendable {
    public var spi: KeyID?
    public var encryptSpi: KeyID?
    public var keyFingerprint: String
    public var xfrmRevision: Int64
    public init(spi: KeyID?, encryptSpi: KeyID?, keyFingerprint: String, xfrmRevision: Int64) {
        self.spi = spi
        self.encryptSpi = encryptSpi
        self.keyFingerprint = keyFingerprint
        self.xfrmRevision = xfrmRevision
    }
}
