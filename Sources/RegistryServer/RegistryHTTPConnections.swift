import AsyncHTTPClient
import NIOCore
import NIOPosix
import NIOSSL

/// An HTTP connection pool for `EmbeddedRegistryClient`s, for callers that need more concurrent
/// connections to the registry than the shared client's default of 8 per host (each open watch holds one).
/// Call `shutdown()` once every client using it is done.
public final class RegistryHTTPConnections: Sendable {
    let httpClient: HTTPClient

    /// - Parameter tls: for an `https://` registry (`RegistryTLS.client`); nil uses the system's trust roots.
    public init(maxConnectionsPerHost: Int = 8, tls: TLSConfiguration? = nil) {
        var configuration = HTTPClient.Configuration()
        configuration.tlsConfiguration = tls
        configuration.connectionPool = .init(
            idleTimeout: .seconds(60), concurrentHTTP1ConnectionsPerHostSoftLimit: max(1, maxConnectionsPerHost))
        httpClient = HTTPClient(eventLoopGroupProvider: .singleton, configuration: configuration)
    }

    public func shutdown() async throws {
        try await httpClient.shutdown()
    }
}
