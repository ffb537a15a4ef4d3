/// `HOST:PORT` or `[V6]:PORT`: where the admin endpoint and `registry serve` listen, and the authority of an
/// endpoint URL. Parsed once, so every place that takes one reports the same mistakes the same way.
public struct ListenAddress: Sendable, Hashable, CustomStringConvertible {
    public var host: String
    public var port: Int

    /// nil when `text` is not `HOST:PORT` with a port in 0–65535 (IPv6 literals in brackets).
    public init?(_ text: some StringProtocol) {
        guard let (host, port) = Self.split(Substring(text)), let port, !host.isEmpty else { return nil }
        self.host = String(host)
        self.port = port
    }

    /// Splits `HOST[:PORT]` / `[V6][:PORT]`; the port is nil when absent, the whole result nil when malformed.
    static func split(_ text: Substring) -> (host: Substring, port: Int?)? {
        var host = text
        var portText: Substring?
        if text.hasPrefix("[") {
            guard let close = text.firstIndex(of: "]") else { return nil }
            host = text[text.index(after: text.startIndex)..<close]
            let rest = text[text.index(after: close)...]
            guard IPAddress(host)?.family == .v6 else { return nil }
            if !rest.isEmpty {
                guard rest.hasPrefix(":") else { return nil }
                portText = rest.dropFirst()
            }
        } else if let colon = text.lastIndex(of: ":") {
            guard !text[..<colon].contains(":") else { return nil }  // a bare IPv6 literal needs brackets
            host = text[..<colon]
            portText = text[text.index(after: colon)...]
        }
        guard let portText else { return (host, nil) }
        guard !portText.isEmpty, portText.utf8.allSatisfy({ (0x30...0x39).contains($0) }), portText.count <= 5,
            let port = Int(portText), (0...65535).contains(port)
        else { return nil }
        return (host, port)
    }

    /// True when only this host can connect: 127.0.0.0/8, ::1 or `localhost`.
    public var isLoopback: Bool {
        if host == "localhost" { return true }
        switch IPAddress(host) {
        case .v4(let v)?: return v >> 24 == 127
        case .v6(let v)?: return v == 1
        case nil: return false
        }
    }

    public var description: String { host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)" }
}
