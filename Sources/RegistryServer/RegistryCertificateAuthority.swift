import Crypto
import Foundation
import IPsecPrimitives
import Registry
import SwiftASN1
import X509

/// A certificate authority for a test or small cluster: the CA itself, the registry's server certificate, and
/// one client certificate per node whose common name (and DNS name) is the node name, so that with mutual TLS
/// the certificate is the node's identity. `ipsec-agent registry tls-init` writes them as PEM files. ECDSA P-256
/// throughout; larger clusters should use their own PKI (the files are ordinary PEM).
public struct RegistryCertificateAuthority: Sendable {
    public let certificate: Certificate
    private let key: P256.Signing.PrivateKey

    /// A new CA, valid for `days`.
    public init(commonName: String = "ipsec-agent registry CA", days: Int = 3650) throws {
        key = P256.Signing.PrivateKey()
        let name = try DistinguishedName { CommonName(commonName) }
        let now = Date()
        certificate = try Certificate(
            version: .v3, serialNumber: Certificate.SerialNumber(), publicKey: .init(key.publicKey),
            notValidBefore: now - 300, notValidAfter: now + Double(days) * 86_400, issuer: name, subject: name,
            signatureAlgorithm: .ecdsaWithSHA256,
            extensions: try Certificate.Extensions {
                Critical(BasicConstraints.isCertificateAuthority(maxPathLength: 0))
                Critical(KeyUsage(keyCertSign: true, cRLSign: true))
            },
            issuerPrivateKey: .init(key))
    }

    /// A CA written earlier (to issue more certificates).
    public init(certificatePEM: String, keyPEM: String) throws {
        certificate = try Certificate(pemEncoded: certificatePEM)
        key = try P256.Signing.PrivateKey(pemRepresentation: keyPEM)
    }

    public var certificatePEM: String { get throws { try certificate.serializeAsPEM().pemString } }
    public var keyPEM: String { key.pemRepresentation }

    /// A leaf certificate and its key (PEM) for `commonName`, with these DNS names and IP addresses, usable as a
    /// server and as a client certificate.
    public func issue(
        commonName: String, dnsNames: [String], ipAddresses: [IPAddress], days: Int = 825
    ) throws
        -> (certificatePEM: String, keyPEM: String)
    {
        let leafKey = P256.Signing.PrivateKey()
        let now = Date()
        var names: [GeneralName] = dnsNames.map { .dnsName($0) }
        names += ipAddresses.map { .ipAddress(ASN1OctetString(contentBytes: ArraySlice($0.bytes))) }
        let leaf = try Certificate(
            version: .v3, serialNumber: Certificate.SerialNumber(), publicKey: .init(leafKey.publicKey),
            notValidBefore: now - 300, notValidAfter: now + Double(days) * 86_400, issuer: certificate.subject,
            subject: try DistinguishedName { CommonName(commonName) },
            signatureAlgorithm: .ecdsaWithSHA256,
            extensions: try Certificate.Extensions {
                Critical(BasicConstraints.notCertificateAuthority)
                Critical(KeyUsage(digitalSignature: true))
                try ExtendedKeyUsage([.serverAuth, .clientAuth])
                SubjectAlternativeNames(names)
            },
            issuerPrivateKey: .init(key))
        return (try leaf.serializeAsPEM().pemString, leafKey.pemRepresentation)
    }

    /// How `registry revoke --certificate` names a certificate: the SHA-256 (lowercase hex) of its signed part
    /// (TBSCertificate), not of the whole DER. An ECDSA signature can be re-encoded into another valid one
    /// ((r, s) and (r, n − s) both verify), so the holder of a revoked certificate could change the whole DER's
    /// hash; the signed part it cannot change. Nil when `der` is not a certificate.
    public static func revocationFingerprint(ofCertificateDER der: [UInt8]) -> String? {
        guard let certificate = try? Certificate(derEncoded: der) else { return nil }
        return SHA256.hash(data: Array(certificate.tbsCertificateBytes)).map { String(format: "%02x", $0) }.joined()
    }

    /// The revocation fingerprint (`revocationFingerprint(ofCertificateDER:)`) and node name of the first
    /// certificate in a PEM text.
    public static func fingerprintAndNodeName(ofPEM pem: String) throws -> (sha256: String, nodeName: String?) {
        let der = try PEMDocument(pemString: pem).derBytes
        guard let fingerprint = revocationFingerprint(ofCertificateDER: der) else {
            throw RegistryError.invalidRecord("not an X.509 certificate")
        }
        return (fingerprint, nodeName(ofCertificateDER: der))
    }

    /// The node name a verified client certificate stands for: its DNS subject alternative name when it has
    /// exactly one, else its common name; nil when neither is a valid node name.
    public static func nodeName(ofCertificateDER der: [UInt8]) -> String? {
        guard let certificate = try? Certificate(derEncoded: der) else { return nil }
        let dns =
            (try? certificate.extensions.subjectAlternativeNames)??.compactMap { name -> String? in
                if case .dnsName(let n) = name { return n }
                return nil
            } ?? []
        if dns.count == 1 { return dns[0] }
        for attribute in certificate.subject.flatMap({ $0 }) where attribute.type == .RDNAttributeType.commonName {
            return String(describing: attribute.value)
        }
        return nil
    }
}
