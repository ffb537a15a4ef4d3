import Agent
import Foundation
import Hummingbird
import IPsecPrimitives
import Logging
import Prometheus
import Registry
import Telemetry

/// The local admin endpoint: `/status`, `/trace?to=IP`, `/metrics`, `/healthz`, `/readyz`. Keep it on
/// loopback: it reveals topology (never key material).
public struct AdminServer {
    public let handle: AgentHandle
    public let telemetry: TelemetryRefresher
    public let listen: (host: String, port: Int)
    public let logger: Logger

    public init(handle: AgentHandle, telemetry: TelemetryRefresher, listen: (host: String, port: Int), logger: Logger) {
        self.handle = handle
        self.telemetry = telemetry
        self.listen = listen
        self.logger = logger
    }

    public func makeApplication(
        onListening: @escaping @Sendable (Int) async -> Void = { _ in }
    ) -> some ApplicationProtocol {
        let router = Router()
        let handle = self.handle
        let telemetry = self.telemetry
        router.get("healthz") { _, _ in text(.ok, "ok\n") }
        router.get("readyz") { _, _ in
            guard let controller = handle.controller else { return text(.serviceUnavailable, "starting\n") }
            return await controller.isReady() ? text(.ok, "ready\n") : text(.serviceUnavailable, "not ready\n")
        }
        router.get("status") { _, _ in
            guard let controller = handle.controller else {
                return text(.serviceUnavailable, "starting: no node ID from the registry yet\n")
            }
            return try json(await controller.status())
        }
        router.get("trace") { request, _ in
            guard let controller = handle.controller, let kernel = handle.kernel, let map = handle.encryptMap else {
                return text(.serviceUnavailable, "starting\n")
            }
            guard let to = request.uri.queryParameters.get("to"), let address = IPAddress(to) else {
                return text(.badRequest, "trace needs ?to=<IP address>\n")
            }
            return try json(await controller.trace(to: address, kernel: kernel, encryptMap: map))
        }
        router.get("metrics") { _, _ in
            await telemetry.refresh(handle)
            return Response(
                status: .ok, headers: [.contentType: "text/plain; version=0.0.4"],
                body: .init(byteBuffer: ByteBuffer(bytes: telemetry.registry.emitToBuffer())))
        }
        return Application(
            router: router,
            configuration: .init(address: .hostname(listen.host, port: listen.port), serverName: nil),
            onServerRunning: { channel in await onListening(channel.localAddress?.port ?? 0) },
            logger: logger)
    }
}

private func text(_ status: HTTPResponse.Status, _ body: String) -> Response {
    Response(status: status, headers: [.contentType: "text/plain"], body: .init(byteBuffer: ByteBuffer(string: body)))
}

private func json(_ value: some Encodable) throws -> Response {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
    return Response(
        status: .ok, headers: [.contentType: "application/json"],
        body: .init(byteBuffer: ByteBuffer(bytes: Array(try encoder.encode(value)))))
}
