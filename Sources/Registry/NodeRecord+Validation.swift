import IPsecPrimitives

extension NodeRecord {
    /// The most pod CIDRs one record may carry.
    public static let maxPodCIDRs = 64
    /// Longest accepted `bootID` and `keyFingerprint`.
    public static let maxTokenLength = 128

    /// True for an RFC 1123 DNS subdomain: lowercase labels of `a-z0-9-` (1…63 characters, no leading or
    /// trailing `-`) joined by `.`, at most 253 characters.
    public static func isValidName(_ name: String) -> Bool {
        guard !name.isEmpty, name.utf8.count <= 253 else { return false }
        let labels = name.utf8.split(separator: UInt8(ascii: "."), omittingEmptySubsequences: false)
        return labels.allSatisfy { label in
            guard (1...63).contains(label.count), label.first != UInt8(ascii: "-"), label.last != UInt8(ascii: "-")
            else {
                return false
            }
            return label.allSatisfy { c in
                (UInt8(ascii: "a")...UInt8(ascii: "z")).contains(c)
                    || (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(c)
                    || c == UInt8(ascii: "-")
            }
        }
    }

    /// Checks every field a registry must refuse to store; the error names the field.
    /// (`spi`/`encryptSpi` outside 1…15 cannot be represented: `KeyID` decoding already rejects them.)
    public func validate() throws(RegistryError) {
        guard NodeRecord.isValidName(name) else {
            throw .invalidRecord(
                "name: \"\(name.prefix(64))\" is not a DNS-like name (lowercase a-z, 0-9, '-', '.', at most 253 characters)"
            )
        }
        if let ipv4, ipv4.family != .v4 { throw .invalidRecord("ipv4: \(ipv4) is not an IPv4 address") }
        if let ipv6, ipv6.family != .v6 { throw .invalidRecord("ipv6: \(ipv6) is not an IPv6 address") }
        guard podCIDRs.count <= NodeRecord.maxPodCIDRs else {
            throw .invalidRecord("podCIDRs: \(podCIDRs.count) entries, at most \(NodeRecord.maxPodCIDRs) allowed")
        }
        try NodeRecord.checkToken(bootID, field: "bootID")
        try NodeRecord.checkToken(keyFingerprint, field: "keyFingerprint")
        guard xfrmRevision >= 0 else { throw .invalidRecord("xfrmRevision: \(xfrmRevision) is negative") }
        guard heartbeatMillis >= 0 else { throw .invalidRecord("heartbeatMillis: \(heartbeatMillis) is negative") }
    }

    private static func checkToken(_ value: String, field: String) throws(RegistryError) {
        guard value.utf8.count <= maxTokenLength else {
            throw .invalidRecord("\(field): \(value.utf8.count) bytes, at most \(maxTokenLength) allowed")
        }
        guard value.utf8.allSatisfy({ (0x21...0x7E).contains($0) }) else {
            throw .invalidRecord("\(field): only printable ASCII without spaces is allowed")
        }
    }
}
