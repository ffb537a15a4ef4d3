#if canImport(Glibc)
    import Glibc
#endif

/// Symbolic names for the errno values netlink operations return, for error descriptions.
enum ErrnoName {
    private static let names: [Int32: String] = [
        EPERM: "EPERM", ENOENT: "ENOENT", ESRCH: "ESRCH", EINTR: "EINTR", EBADF: "EBADF", EAGAIN: "EAGAIN",
        ENOMEM: "ENOMEM", EACCES: "EACCES", EFAULT: "EFAULT", EBUSY: "EBUSY", EEXIST: "EEXIST", ENODEV: "ENODEV",
        EINVAL: "EINVAL", ENOSPC: "ENOSPC", ERANGE: "ERANGE", ENOSYS: "ENOSYS", EMSGSIZE: "EMSGSIZE",
        EPROTONOSUPPORT: "EPROTONOSUPPORT", EOPNOTSUPP: "EOPNOTSUPP", EAFNOSUPPORT: "EAFNOSUPPORT",
        ENOBUFS: "ENOBUFS", ETIMEDOUT: "ETIMEDOUT", E2BIG: "E2BIG", ELOOP: "ELOOP",
        EPROTO: "EPROTO", ENOTCONN: "ENOTCONN", EADDRNOTAVAIL: "EADDRNOTAVAIL", ENOPROTOOPT: "ENOPROTOOPT",
    ]

    /// `EEXIST`, or `errno 123` for values not in the table.
    static func name(_ code: Int32) -> String { names[code] ?? "errno \(code)" }

    /// `EEXIST (File exists)`.
    static func describe(_ code: Int32) -> String {
        "\(name(code)) (\(String(cString: strerror(code))))"
    }
}
