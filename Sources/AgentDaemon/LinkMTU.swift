import Foundation
import IPsecPrimitives

#if canImport(Glibc)
    import Glibc
#endif

/// Interface MTUs of this network namespace: the underlay's (which bounds the ESP tunnel MTU) and the pod
/// interfaces' (which must not exceed it). Read from `getifaddrs(3)` and `/sys/class/net/NAME/mtu`.
enum LinkMTU {
    /// The interface holding `address`, or nil when no interface has it.
    static func interface(holding address: IPAddress) -> String? {
        var list: UnsafeMutablePointer<ifaddrs>?
        guard getifaddrs(&list) == 0, let first = list else { return nil }
        defer { freeifaddrs(list) }
        for entry in sequence(first: first, next: { $0.pointee.ifa_next }) {
            guard let sa = entry.pointee.ifa_addr else { continue }
            let found: IPAddress? =
                switch Int32(sa.pointee.sa_family) {
                case AF_INET:
                    sa.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { sin in
                        withUnsafeBytes(of: sin.pointee.sin_addr) { IPAddress(bytes: Array($0)) }
                    }
                case AF_INET6:
                    sa.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) { sin6 in
                        withUnsafeBytes(of: sin6.pointee.sin6_addr) { IPAddress(bytes: Array($0)) }
                    }
                default: nil
                }
            if found == address { return String(cString: entry.pointee.ifa_name) }
        }
        return nil
    }

    /// The MTU of the named interface, or nil when it does not exist here.
    static func mtu(of interface: String) -> Int? {
        guard !interface.contains("/"), interface != "..", interface != ".",
            let text = try? String(contentsOfFile: "/sys/class/net/\(interface)/mtu", encoding: .utf8)
        else { return nil }
        return Int(text.trimmingCharacters(in: .whitespacesAndNewlines))
    }
}
