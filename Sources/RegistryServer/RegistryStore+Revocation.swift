import GRDB
import Registry

/// Revocation without a new cluster secret: per node, the oldest bearer-credential generation still accepted;
/// and a list of revoked client certificates (mutual TLS, where the certificate is the credential). Both are
/// durable and take effect on the next request.
extension RegistryStore {
    // MARK: Revocation

    /// Reads both revocation tables (at start-up): credential generations by node, revoked certificates.
    static func loadRevocations(
        _ database: DatabasePool
    ) throws -> (generations: [String: Int64], certificates: [String: String]) {
        try database.read { db in
            var generations: [String: Int64] = [:]
            var certificates: [String: String] = [:]
            for row in try Row.fetchAll(db, sql: "SELECT name, generation FROM credential_generations") {
                generations[row["name"]] = row["generation"] as Int64
            }
            for row in try Row.fetchAll(db, sql: "SELECT sha256, name FROM revoked_certificates") {
                certificates[row["sha256"]] = row["name"] as String
            }
            return (generations, certificates)
        }
    }

    /// The oldest credential generation `name` may authenticate with.
    func minimumCredentialGeneration(of name: String) -> Int64 { credentialGenerations[name] ?? 0 }

    /// Revokes every credential of `name` issued so far (admin): only generation `returned` or later is accepted
    /// from now on, and its live record is deleted, so the holder of the old credential is out at once. Durable.
    func revoke(name: String) throws -> Int64 {
        let next = (credentialGenerations[name] ?? 0) + 1
        try database.write { db in
            try db.execute(
                sql: "INSERT OR REPLACE INTO credential_generations (name, generation) VALUES (?, ?)",
                arguments: [name, next])
        }
        credentialGenerations[name] = next
        if live[name] != nil { try remove([name]) }
        return next
    }

    /// True when the client certificate with this fingerprint (SHA-256 of its signed part, lowercase hex) was revoked.
    func isCertificateRevoked(sha256: String) -> Bool { revokedCertificates[sha256] != nil }

    /// Revokes one client certificate of `name` (admin), by the SHA-256 of its signed part (`RegistryCertificateAuthority.revocationFingerprint`): a connection presenting it is
    /// refused from the next request on, other certificates of the node (a re-issued one) still work, and the
    /// node's live record is deleted, as when its bearer credentials are revoked. Durable; revoking again is a no-op.
    func revokeCertificate(sha256: String, of name: String) throws {
        try database.write { db in
            try db.execute(
                sql: "INSERT OR REPLACE INTO revoked_certificates (sha256, name) VALUES (?, ?)",
                arguments: [sha256, name])
        }
        revokedCertificates[sha256] = name
        if live[name] != nil { try remove([name]) }
    }
}
