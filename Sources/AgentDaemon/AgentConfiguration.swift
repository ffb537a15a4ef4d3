import Foundation
import IPsecPrimitives
import Yams

/// `ipsec-agent run --config FILE`: one YAML file per node. docs/configuration.md has a complete commented
/// example. Unknown keys and bad values are errors at start-up naming the line.
public struct AgentConfiguration: Sendable, Equatable {
    /// Which registry the agent uses: the embedded one, or etcd.
    public enum Registry: Sendable, Equatable {
        /// The embedded registry's base URL (`ipsec-agent registry serve`).
        case embedded(url: String)
        /// etcd v3 endpoints, tried in turn.
        case etcd(endpoints: [String], prefix: String)
    }

    public var nodeName: String
    public var underlayIPv4: IPAddress?
    public var underlayIPv6: IPAddress?
    public var podCIDRs: [IPPrefix]
    public var keyFile: String
    public var registry: Registry
    public var credentialFile: String?
    /// PEM files for `https://` registry or etcd endpoints (`registry.tls`).
    public struct TLSFiles: Sendable, Equatable {
        /// The CA that signed the registry's (or etcd's) certificate.
        public var ca: String
        /// This node's client certificate and key (mutual TLS); both or neither.
        public var certificate: String?
        public var key: String?
    }
    public var registryTLS: TLSFiles?
    /// Plain `http://` to a non-loopback registry was explicitly allowed (`registry.insecure: true`).
    public var registryInsecure: Bool
    public var interfaces: [String]
    public var bpfPinDirectory: String
    public var reconcileInterval: Duration
    public var rotationJitter: Duration
    public var rotationFallbackTimeout: Duration
    public var fallbackQuietWindow: Duration
    public var peerRemovalGrace: Duration
    public var adminListen: String
    /// Network namespace whose XFRM database the agent manages (`/var/run/netns/NAME`); nil = the agent's own.
    public var networkNamespace: String?
    public var bootIDFile: String
    /// Lower the namespace's XFRM policy hash thresholds so the agent's policies are hashed (docs/datapath.md).
    public var xfrmPolicyHashing: Bool
    /// The broadest pod CIDR a peer record may claim, per family (broader ones are refused; docs/registry.md).
    public var minimumPodPrefixIPv4: Int
    public var minimumPodPrefixIPv6: Int
    /// The underlay interface's MTU, when set by hand; nil = read from the interface holding the underlay address.
    public var underlayMTU: Int?

    /// A configuration problem, naming the file, the line when known, and the field.
    public struct Error: Swift.Error, CustomStringConvertible, Equatable {
        public var file: String
        public var line: Int?
        public var message: String
        public var description: String { "\(file)\(line.map { ":\($0)" } ?? ""): \(message)" }
    }

    /// Reads and validates a configuration file.
    public static func load(path: String) throws -> AgentConfiguration {
        let text: String
        do {
            text = try String(contentsOfFile: path, encoding: .utf8)
        } catch {
            throw Error(file: path, line: nil, message: "cannot read the configuration file")
        }
        return try parse(text, file: path)
    }

    static let knownKeys: Set<String> = [
        "node", "underlay", "podCIDRs", "keyFile", "registry", "interfaces", "bpfPinDirectory", "reconcileInterval",
        "rotationJitter", "rotationFallbackTimeout", "fallbackQuietWindow", "peerRemovalGrace", "adminListen",
        "networkNamespace", "bootIDFile", "xfrmPolicyHashing", "minimumPodPrefixIPv4", "minimumPodPrefixIPv6",
        "underlayMTU",
    ]
    static let registryKeys: Set<String> = ["embedded", "etcd", "etcdPrefix", "credentialFile", "tls", "insecure"]
    static let tlsKeys: Set<String> = ["ca", "certificate", "key"]

    /// Parses YAML text; `file` names the source in errors.
    public static func parse(_ text: String, file: String = "config") throws -> AgentConfiguration {
        let root: Node
        do {
            guard let node = try Yams.compose(yaml: text) else {
                throw Error(file: file, line: nil, message: "the file is empty")
            }
            root = node
        } catch let e as Error {
            throw e
        } catch {
            throw Error(file: file, line: (error as? YamlError).flatMap(Self.line(of:)), message: "not valid YAML")
        }
        guard let map = root.mapping else {
            throw Error(file: file, line: root.mark?.line, message: "expected a mapping of settings")
        }
        let reader = Reader(file: file, map: map, known: knownKeys)
        try reader.rejectUnknown()

        let name = try reader.string("node")
        guard NodeName.isValid(name) else {
            throw reader.error(
                "node", "node name must be 1–63 lowercase letters, digits or '-', got \"\(name.prefix(64))\"")
        }
        var v4: IPAddress?
        var v6: IPAddress?
        for text in try reader.strings("underlay") {
            guard let a = IPAddress(text) else {
                throw reader.error("underlay", "not an IP address: \"\(text.prefix(64))\"")
            }
            if a.family == .v4 { v4 = a } else { v6 = a }
        }
        guard v4 != nil || v6 != nil else {
            throw reader.error("underlay", "at least one underlay address is required")
        }
        let pods = try reader.strings("podCIDRs").map { text in
            guard let p = IPPrefix(text) else { throw reader.error("podCIDRs", "not a CIDR: \"\(text.prefix(64))\"") }
            return p
        }
        guard !pods.isEmpty else { throw reader.error("podCIDRs", "at least one pod CIDR is required") }

        guard let regNode = map["registry"] else {
            throw Error(file: file, line: nil, message: "missing required setting \"registry\"")
        }
        guard let regMap = regNode.mapping else {
            throw Error(file: file, line: regNode.mark?.line, message: "\"registry\" must be a mapping")
        }
        let reg = Reader(file: file, map: regMap, known: registryKeys, prefix: "registry.")
        try reg.rejectUnknown()
        let registry: Registry
        switch (regMap["embedded"], regMap["etcd"]) {
        case (.some, nil):
            let url = try reg.string("embedded")
            try reg.endpoint("embedded", url)
            registry = .embedded(url: url)
        case (nil, .some):
            let endpoints = try reg.strings("etcd")
            guard !endpoints.isEmpty else { throw reg.error("etcd", "at least one endpoint is required") }
            for endpoint in endpoints { try reg.endpoint("etcd", endpoint) }
            registry = .etcd(endpoints: endpoints, prefix: try reg.optionalString("etcdPrefix") ?? "/ipsec-agent/")
        case (.some, .some):
            throw reg.error("etcd", "set either registry.embedded or registry.etcd, not both")
        case (nil, nil):
            throw Error(
                file: file, line: regNode.mark?.line,
                message: "registry needs \"embedded\" (URL) or \"etcd\" (endpoints)")
        }

        var tls: TLSFiles?
        if let tlsNode = regMap["tls"] {
            guard let tlsMap = tlsNode.mapping else {
                throw reg.error("tls", "expected a mapping with ca, certificate, key")
            }
            let t = Reader(file: file, map: tlsMap, known: tlsKeys, prefix: "registry.tls.")
            try t.rejectUnknown()
            tls = TLSFiles(
                ca: try t.string("ca"), certificate: try t.optionalString("certificate"),
                key: try t.optionalString("key"))
            guard (tls?.certificate == nil) == (tls?.key == nil) else {
                throw t.error(
                    tls?.certificate == nil ? "key" : "certificate",
                    "registry.tls.certificate and registry.tls.key go together")
            }
        }
        let insecure = try reg.bool("insecure", default: false)
        let urls: [(String, String)] =
            switch registry {
            case .embedded(let url): [("embedded", url)]
            case .etcd(let endpoints, _): endpoints.map { ("etcd", $0) }
            }
        for (key, url) in urls {
            let endpoint = try EndpointURL(url)  // validated above
            if tls != nil, !endpoint.isTLS {
                throw reg.error(key, "registry.tls is set, so the URL must be https://, got \"\(url.prefix(64))\"")
            }
            if !endpoint.isTLS, !endpoint.isLoopback, !insecure {
                throw reg.error(
                    key,
                    "plain http:// to \(endpoint.host) would send the credential and every record in the clear: "
                        + "use https:// with registry.tls, or set registry.insecure: true")
            }
        }

        return AgentConfiguration(
            nodeName: name, underlayIPv4: v4, underlayIPv6: v6, podCIDRs: pods,
            keyFile: try reader.string("keyFile"), registry: registry,
            credentialFile: try reg.optionalString("credentialFile"), registryTLS: tls, registryInsecure: insecure,
            interfaces: try reader.optionalStrings("interfaces") ?? [],
            bpfPinDirectory: try reader.optionalString("bpfPinDirectory") ?? "/sys/fs/bpf/ipsec-agent",
            reconcileInterval: try reader.duration("reconcileInterval", default: .seconds(15), min: .milliseconds(100)),
            rotationJitter: try reader.duration("rotationJitter", default: .zero, min: .zero),
            rotationFallbackTimeout: try reader.duration(
                "rotationFallbackTimeout", default: .seconds(300), min: .seconds(1)),
            fallbackQuietWindow: try reader.duration("fallbackQuietWindow", default: .seconds(30), min: .seconds(1)),
            peerRemovalGrace: try reader.duration("peerRemovalGrace", default: .seconds(60), min: .zero),
            adminListen: try reader.listenAddress("adminListen") ?? "127.0.0.1:9479",
            networkNamespace: try reader.optionalString("networkNamespace"),
            bootIDFile: try reader.optionalString("bootIDFile") ?? "/proc/sys/kernel/random/boot_id",
            xfrmPolicyHashing: try reader.bool("xfrmPolicyHashing", default: true),
            minimumPodPrefixIPv4: try reader.integer("minimumPodPrefixIPv4", default: 16, in: 1...32),
            minimumPodPrefixIPv6: try reader.integer("minimumPodPrefixIPv6", default: 48, in: 1...128),
            underlayMTU: try reader.optionalInteger("underlayMTU", in: 576...65535))
    }

    /// Settings that work but that an operator should hear about at start-up.
    public var warnings: [String] {
        var out: [String] = []
        let plain: [EndpointURL] =
            switch registry {
            case .embedded(let url): [try? EndpointURL(url)].compactMap { $0 }
            case .etcd(let endpoints, _): endpoints.compactMap { try? EndpointURL($0) }
            }
        for endpoint in plain where !endpoint.isTLS && !endpoint.isLoopback {
            out.append(
                "the registry at \(endpoint) is plain HTTP (registry.insecure: true): the credential and every record "
                    + "cross the network in the clear; use https:// with registry.tls")
        }
        if let admin = ListenAddress(adminListen), !admin.isLoopback {
            out.append(
                "adminListen \(adminListen) is not a loopback address: /status, /trace and /metrics (peer names, "
                    + "addresses, key IDs) are served to anyone who can reach it; keep it on 127.0.0.1 or firewall the port"
            )
        }
        return out
    }

    /// The underlay the tunnels use: IPv4 when configured, else IPv6.
    public var underlay: IPAddress { underlayIPv4 ?? underlayIPv6! }

    static func line(of error: YamlError) -> Int? {
        switch error {
        case .scanner(_, _, let mark, _), .parser(_, _, let mark, _), .composer(_, _, let mark, _): mark.line
        default: nil
        }
    }

    /// Typed access to one mapping, with errors naming the key and its line.
    struct Reader {
        let file: String
        let map: Node.Mapping
        let known: Set<String>
        var prefix = ""

        /// Refuses unknown and repeated setting names (YAML parsers let the last of two equal keys win silently).
        func rejectUnknown() throws {
            var lines: [String: Int] = [:]
            for (key, _) in map {
                guard let k = key.string else {
                    throw Error(file: file, line: key.mark?.line, message: "setting names must be strings")
                }
                let line = key.mark?.line ?? 0
                if let first = lines[k] {
                    throw Error(
                        file: file, line: line,
                        message:
                            "setting \"\(prefix)\(k.prefix(64))\" is given twice, at lines \(first) and \(line); keep one"
                    )
                }
                lines[k] = line
                if !known.contains(k) {
                    throw Error(
                        file: file, line: key.mark?.line,
                        message:
                            "unknown setting \"\(prefix)\(k.prefix(64))\" (known: \(known.sorted().joined(separator: ", ")))"
                    )
                }
            }
        }

        func error(_ key: String, _ message: String) -> Error {
            Error(file: file, line: map[key]?.mark?.line, message: "\(prefix)\(key): \(message)")
        }

        func string(_ key: String) throws -> String {
            guard let v = try optionalString(key) else {
                throw Error(file: file, line: nil, message: "missing required setting \"\(prefix)\(key)\"")
            }
            return v
        }

        func optionalString(_ key: String) throws -> String? {
            guard let node = map[key] else { return nil }
            guard let s = node.scalar?.string, !s.isEmpty else { throw error(key, "expected a non-empty string") }
            return s
        }

        /// A scalar or a sequence of scalars.
        func strings(_ key: String) throws -> [String] {
            guard let v = try optionalStrings(key) else {
                throw Error(file: file, line: nil, message: "missing required setting \"\(prefix)\(key)\"")
            }
            return v
        }

        func optionalStrings(_ key: String) throws -> [String]? {
            guard let node = map[key] else { return nil }
            if let s = node.scalar?.string { return [s] }
            guard let seq = node.sequence else { throw error(key, "expected a string or a list of strings") }
            return try seq.map { item in
                guard let s = item.scalar?.string else { throw error(key, "expected a list of strings") }
                return s
            }
        }

        func endpoint(_ key: String, _ text: String) throws {
            do {
                _ = try EndpointURL(text)
            } catch {
                throw self.error(key, error.problem)
            }
        }

        func listenAddress(_ key: String) throws -> String? {
            guard let text = try optionalString(key) else { return nil }
            guard ListenAddress(text) != nil else {
                throw error(key, "expected HOST:PORT (IPv6 in brackets, [::1]:9479), got \"\(text.prefix(64))\"")
            }
            return text
        }

        func integer(_ key: String, default value: Int, in range: ClosedRange<Int>) throws -> Int {
            try optionalInteger(key, in: range) ?? value
        }

        func optionalInteger(_ key: String, in range: ClosedRange<Int>) throws -> Int? {
            guard let text = try optionalString(key) else { return nil }
            guard let n = Int(text), range.contains(n) else {
                throw error(
                    key, "expected a whole number \(range.lowerBound)…\(range.upperBound), got \"\(text.prefix(32))\"")
            }
            return n
        }

        func bool(_ key: String, default value: Bool) throws -> Bool {
            guard let text = try optionalString(key) else { return value }
            switch text {
            case "true": return true
            case "false": return false
            default: throw error(key, "expected true or false, got \"\(text.prefix(32))\"")
            }
        }

        func duration(_ key: String, default value: Duration, min: Duration) throws -> Duration {
            guard let text = try optionalString(key) else { return value }
            guard let d = DurationText.parse(text) else {
                throw error(key, "expected a duration like 500ms, 15s, 5m or 1h, got \"\(text.prefix(32))\"")
            }
            guard d >= min else { throw error(key, "must be at least \(DurationText.format(min)), got \(text)") }
            return d
        }
    }
}

/// Node names: DNS labels, as the registry requires.
public enum NodeName {
    public static func isValid(_ name: String) -> Bool {
        guard (1...63).contains(name.utf8.count), name.first != "-", name.last != "-" else { return false }
        return name.utf8.allSatisfy { (0x61...0x7A).contains($0) || (0x30...0x39).contains($0) || $0 == 0x2D }
    }
}

/// "500ms", "15s", "5m", "1h" ↔ Duration.
public enum DurationText {
    public static func parse(_ text: String) -> Duration? {
        let units: [(String, Int64)] = [("ms", 1), ("s", 1000), ("m", 60_000), ("h", 3_600_000)]
        for (suffix, millis) in units where text.hasSuffix(suffix) {
            let number = text.dropLast(suffix.count)
            if suffix == "s", number.hasSuffix("m") { continue }
            guard let n = Int64(number), n >= 0, n < 1_000_000_000 else { return nil }
            return .milliseconds(n * millis)
        }
        return nil
    }

    public static func format(_ d: Duration) -> String {
        let ms = d.components.seconds * 1000 + d.components.attoseconds / 1_000_000_000_000_000
        if ms % 1000 != 0 { return "\(ms)ms" }
        return "\(ms / 1000)s"
    }
}
