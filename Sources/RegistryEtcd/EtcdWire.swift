// The JSON shapes of etcd 3.4's gRPC gateway (`/v3/...`), as far as the registry uses them.
//
// The gateway speaks protobuf-JSON: keys and values are base64, int64 fields are decimal strings,
// false booleans and empty lists are omitted. These types mirror that and nothing more; the
// conversions to Swift values live in small helpers below.

#if canImport(FoundationEssentials)
    import FoundationEssentials
#else
    import Foundation
#endif

/// Namespace for the gateway's request and response messages.
enum EtcdWire {
    // MARK: Common

    struct ResponseHeader: Decodable, Sendable {
        var revision: String?
    }

    struct KeyValue: Decodable, Sendable {
        var key: String
        var value: String?
        var create_revision: String?
        var mod_revision: String?
        var lease: String?
    }

    // MARK: KV

    struct RangeRequest: Encodable, Sendable {
        var key: String
        var range_end: String?
        var keys_only: Bool?
    }

    struct RangeResponse: Decodable, Sendable {
        var header: ResponseHeader?
        var kvs: [KeyValue]?
    }

    struct PutRequest: Encodable, Sendable {
        var key: String
        var value: String
        var lease: String?
    }

    struct DeleteRangeRequest: Encodable, Sendable {
        var key: String
        var range_end: String?
    }

    struct DeleteRangeResponse: Decodable, Sendable {
        var header: ResponseHeader?
        var deleted: String?
    }

    struct CompactionRequest: Encodable, Sendable {
        var revision: String
        var physical: Bool?
    }

    struct Empty: Decodable, Sendable {}

    // MARK: Transactions

    struct Compare: Encodable, Sendable {
        enum Target: String, Encodable, Sendable { case CREATE, VALUE, MOD }
        var key: String
        var range_end: String?
        var target: Target
        var result = "EQUAL"
        var create_revision: String?
        var mod_revision: String?
        var value: String?

        /// True when every key in [key, rangeEnd) was last written at or before `revision`. (A key deleted since
        /// is not seen; the record check this guards only concerns records that exist.)
        static func unmodifiedSince(_ key: String, rangeEnd: String, revision: Int64) -> Compare {
            Compare(key: key, range_end: rangeEnd, target: .MOD, result: "LESS", mod_revision: String(revision + 1))
        }

        /// True when the key does not exist (its create_revision is 0).
        static func absent(_ key: String) -> Compare {
            Compare(key: key, target: .CREATE, create_revision: "0")
        }

        /// True when the key's value equals `value` (both base64).
        static func valueEquals(_ key: String, _ value: String) -> Compare {
            Compare(key: key, target: .VALUE, value: value)
        }
    }

    struct RequestOp: Encodable, Sendable {
        var request_put: PutRequest?
        var request_range: RangeRequest?
        var request_delete_range: DeleteRangeRequest?

        static func put(_ r: PutRequest) -> RequestOp { RequestOp(request_put: r) }
        static func range(_ r: RangeRequest) -> RequestOp { RequestOp(request_range: r) }
        static func delete(_ r: DeleteRangeRequest) -> RequestOp { RequestOp(request_delete_range: r) }
    }

    struct TxnRequest: Encodable, Sendable {
        var compare: [Compare]
        var success: [RequestOp]
        var failure: [RequestOp]
    }

    struct ResponseOp: Decodable, Sendable {
        var response_range: RangeResponse?
    }

    struct TxnResponse: Decodable, Sendable {
        var header: ResponseHeader?
        var succeeded: Bool?
        var responses: [ResponseOp]?
    }

    // MARK: Leases

    struct LeaseGrantRequest: Encodable, Sendable {
        var TTL: String
        var ID = "0"
    }

    struct LeaseGrantResponse: Decodable, Sendable {
        var ID: String?
        var TTL: String?
        var error: String?
    }

    struct LeaseIDRequest: Encodable, Sendable {
        var ID: String
    }

    /// `/v3/lease/keepalive` is a gRPC stream: the gateway wraps each answer in `result`.
    struct LeaseKeepAliveEnvelope: Decodable, Sendable {
        struct Result: Decodable, Sendable {
            var ID: String?
            /// Omitted (0) when the lease no longer exists.
            var TTL: String?
        }
        var result: Result?
    }

    // MARK: Watch

    struct WatchRequest: Encodable, Sendable {
        struct Create: Encodable, Sendable {
            var key: String
            var range_end: String
            var start_revision: String
        }
        var create_request: Create
    }

    struct Event: Decodable, Sendable {
        /// Omitted for PUT; "DELETE" for deletions (including lease expiry).
        var type: String?
        var kv: KeyValue?
    }

    struct WatchResponse: Decodable, Sendable {
        var header: ResponseHeader?
        var created: Bool?
        var canceled: Bool?
        var compact_revision: String?
        var cancel_reason: String?
        var events: [Event]?
    }

    /// One line of the `/v3/watch` stream: `{"result":{…}}` or an error.
    struct WatchEnvelope: Decodable, Sendable {
        var result: WatchResponse?
        var error: GatewayError?
    }

    // MARK: Errors

    /// The gateway's error body: `{"error":"…","message":"…","code":N}`. Inside a stream the
    /// gateway may nest it as `{"error":{"message":…,"grpc_code":N,…}}`; both decode here.
    struct GatewayError: Decodable, Sendable {
        var message: String
        var code: Int

        private enum CodingKeys: String, CodingKey { case error, message, code, grpc_code }

        init(from decoder: any Decoder) throws {
            if let text = try? decoder.singleValueContainer().decode(String.self) {
                message = text
                code = 2  // gRPC "unknown"
                return
            }
            let c = try decoder.container(keyedBy: CodingKeys.self)
            let error = try? c.decodeIfPresent(String.self, forKey: .error)
            message = try c.decodeIfPresent(String.self, forKey: .message) ?? error ?? ""
            code =
                try c.decodeIfPresent(Int.self, forKey: .code) ?? c.decodeIfPresent(Int.self, forKey: .grpc_code) ?? 2
        }
    }
}

// MARK: - Conversions

extension EtcdWire {
    static func base64(_ text: String) -> String {
        Data(text.utf8).base64EncodedString()
    }

    static func base64(_ bytes: some Sequence<UInt8>) -> String {
        Data(bytes).base64EncodedString()
    }

    /// Decodes a base64 field; nil when it is not valid base64.
    static func bytes(base64 text: String?) -> [UInt8]? {
        guard let text else { return [] }  // protobuf-JSON omits empty bytes
        return Data(base64Encoded: text).map { Array($0) }
    }

    /// Decodes an int64 string field; omitted means 0.
    static func int64(_ text: String?) -> Int64? {
        guard let text else { return 0 }
        return Int64(text)
    }
}
