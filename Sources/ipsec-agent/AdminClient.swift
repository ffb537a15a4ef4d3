import AgentDaemon
import ArgumentParser
import AsyncHTTPClient
import Foundation
import NIOCore
import NIOFoundationEssentialsCompat
import NIOHTTP1

/// Reads the running agent's admin endpoint (for `status` and `trace`).
enum AdminClient {
    static func get(_ address: String, _ path: String) async throws -> (status: UInt, body: Data) {
        let request = HTTPClientRequest(url: "http://\(address)\(path)")
        let response: HTTPClientResponse
        do {
            response = try await HTTPClient.shared.execute(request, timeout: .seconds(10))
        } catch {
            throw ValidationError(
                "cannot reach the agent's admin endpoint at \(address): \(error) (is `ipsec-agent run` up? see adminListen)"
            )
        }
        let body = try await response.body.collect(upTo: 16 << 20)
        return (response.status.code, Data(buffer: body))
    }

    /// Fetches `path` and prints it: the JSON as served, or `text` of the decoded value.
    static func show<T: Decodable>(
        _ path: String, admin: String?, config: String?, json: Bool, as type: T.Type,
        text: (T) -> String
    ) async throws {
        let address = try address(admin: admin, config: config)
        let (code, body) = try await get(address, path)
        guard code == 200 else {
            throw ValidationError("agent at \(address) answered \(code): \(String(decoding: body, as: UTF8.self))")
        }
        if json {
            print(String(decoding: body, as: UTF8.self))
        } else {
            print(text(try JSONDecoder().decode(T.self, from: body)), terminator: "")
        }
    }

    /// `--admin` if given, else the config's adminListen, else the default.
    static func address(admin: String?, config: String?) throws -> String {
        if let admin { return admin }
        if let config { return try AgentConfiguration.load(path: config).adminListen }
        return "127.0.0.1:9479"
    }
}
