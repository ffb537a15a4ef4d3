import IPsecPrimitives
import NIOSSL

/// TLS for registry connections, from PEM files: the server's certificate and key (with a client CA for mutual
/// TLS), and a client's CA (with a certificate and key of its own for mutual TLS). Private keys are read as
/// secret files (regular, not accessible by group or others).
public enum RegistryTLS {
    /// Why a TLS file could not be used; the message names the file and never its content.
    public struct Failure: Error, Sendable, CustomStringConvertible {
        public var description: String
    }

    /// A server configuration: TLS 1.2+, and, with `clientCA`, every client must present a certificate it signed.
    public static func server(certificate: String, key: String, clientCA: String?) throws(Failure) -> TLSConfiguration {
        var configuration = TLSConfiguration.makeServerConfiguration(
            certificateChain: try chain(certificate).map { .certificate($0) },
            privateKey: .privateKey(try privateKey(key)))
        configuration.minimumTLSVersion = .tlsv12
        if let clientCA {
            configuration.trustRoots = .certificates(try chain(clientCA, role: "client CA file"))
            configuration.certificateVerification = .noHostnameVerification
        }
        return configuration
    }

    /// A client configuration trusting only `ca` (the server's name is verified against its certificate), with
    /// a client certificate when both `certificate` and `key` are given.
    public static func client(ca: String, certificate: String?, key: String?) throws(Failure) -> TLSConfiguration {
        var configuration = TLSConfiguration.makeClientConfiguration()
        configuration.minimumTLSVersion = .tlsv12
        configuration.trustRoots = .certificates(try chain(ca, role: "CA file"))
        configuration.certificateVerification = .fullVerification
        switch (certificate, key) {
        case (let certificate?, let key?):
            configuration.certificateChain = try chain(certificate).map { .certificate($0) }
            configuration.privateKey = .privateKey(try privateKey(key))
        case (nil, nil):
            break
        default:
            throw Failure(description: "a client certificate needs both its certificate file and its key file")
        }
        return configuration
    }

    static func chain(_ path: String, role: String = "certificate file") throws(Failure) -> [NIOSSLCertificate] {
        let file: RegularFile
        do {
            file = try RegularFile.read(path: path, limit: 1 << 20)
        } catch {
            throw Failure(description: "\(role) \(path): \(error.problem)")
        }
        let certificates: [NIOSSLCertificate]
        do {
            certificates = try NIOSSLCertificate.fromPEMBytes(file.bytes)
        } catch {
            throw Failure(description: "\(role) \(path): not a PEM certificate (\(error))")
        }
        guard !certificates.isEmpty else { throw Failure(description: "\(role) \(path): no PEM certificate in it") }
        return certificates
    }

    static func privateKey(_ path: String) throws(Failure) -> NIOSSLPrivateKey {
        let bytes: [UInt8]
        do {
            bytes = try SecretFile.read(path: path, role: "TLS key file").bytes
        } catch {
            throw Failure(description: error.description)
        }
        do {
            return try NIOSSLPrivateKey(bytes: bytes, format: .pem)
        } catch {
            throw Failure(description: "TLS key file \(path): not a PEM private key")
        }
    }
}
