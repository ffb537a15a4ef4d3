extension KeyAlgorithm {
    /// A stable text naming the algorithm and its ICV, bound into fingerprints and derivations.
    /// Key lengths are not part of it: they are bound by the key bytes' lengths.
    ///
    /// `rfc4106(gcm(aes)) icv=128`, or `hmac(sha256) cbc(aes)`.
    public var identifier: String {
        switch self {
        case .aesGCM(_, let icv): "rfc4106(gcm(aes)) icv=\(icv)"
        case .cbcHMAC(let hash, _, _): "hmac(\(hash)) cbc(aes)"
        }
    }
}
