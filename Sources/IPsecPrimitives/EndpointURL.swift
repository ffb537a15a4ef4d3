/// A registry or etcd endpoint as configured: `http://HOST[:PORT]` or `https://HOST[:PORT]`, optionally with a
/// trailing `/`. Checked at start-up so that a typo is named there instead of being retried for ever.
public struct EndpointURL: Sendable, Hashable, CustomStringConvertible {
    public var isTLS: Bool
    public var host: String
    /// The port as written, or nil for the scheme's default.
    public var port: Int?
    public var description: String

    /// Parses `text`; the error says what is wrong with it without echoing a user-info part (it may be a password).
    public init(_ text: String) throws(EndpointURLError) {
        let isTLS: Bool
        if text.hasPrefix("https://") {
            isTLS = true
        } else if text.hasPrefix("http://") {
            isTLS = false
        } else {
            throw EndpointURLError(problem: "expected an http:// or https:// URL, got \"\(text.prefix(64))\"")
        }
        var rest = Substring(text.dropFirst(isTLS ? 8 : 7))
        if rest.hasSuffix("/") { rest = rest.dropLast() }
        if rest.contains("@") {
            throw EndpointURLError(problem: "a URL must not carry a user name or password (use the credential file)")
        }
        if let bad = rest.first(where: { "/?#".contains($0) }) {
            throw EndpointURLError(
                problem: "expected only scheme, host and port, found \"\(bad)\" in \"\(text.prefix(64))\"")
        }
        guard let (host, port) = ListenAddress.split(rest), !host.isEmpty else {
            throw EndpointURLError(
                problem: "expected HOST or HOST:PORT after the scheme (IPv6 in brackets), got \"\(text.prefix(64))\"")
        }
        let hostname = host.utf8.allSatisfy { b in
            (0x61...0x7A).contains(b) || (0x41...0x5A).contains(b) || (0x30...0x39).contains(b) || b == 0x2D
                || b == 0x2E
        }
        guard IPAddress(host) != nil || hostname && host.count <= 253 else {
            throw EndpointURLError(problem: "\"\(host.prefix(64))\" is neither an IP address nor a host name")
        }
        if port == 0 { throw EndpointURLError(problem: "port 0 cannot be connected to, in \"\(text.prefix(64))\"") }
        self.isTLS = isTLS
        self.host = String(host)
        self.port = port
        self.description = text
    }

    /// True when the host is 127.0.0.0/8, ::1 or `localhost`: plain HTTP to it never leaves the machine.
    public var isLoopback: Bool { ListenAddress(host: host, port: port ?? 0).isLoopback }
}

/// Why a URL or listen address was refused, in words an operator can act on.
public struct EndpointURLError: Error, Sendable, Equatable, CustomStringConvertible {
    public var problem: String
    public var description: String { problem }
}

extension ListenAddress {
    public init(host: String, port: Int) {
        self.host = host
        self.port = port
    }
}
