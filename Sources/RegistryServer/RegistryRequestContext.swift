import Hummingbird
import NIOCore
import NIOSSL

/// The registry's request context: Hummingbird's basics plus the connection, so that a request on a mutual-TLS
/// connection can be attributed to the node its client certificate names.
struct RegistryRequestContext: RequestContext {
    var coreContext: CoreRequestContextStorage
    let channel: any Channel

    init(source: ApplicationRequestContextSource) {
        coreContext = .init(source: source)
        channel = source.channel
    }

    /// The connection's verified client certificate (nil without TLS or without one): the node it names (nil when
    /// it names none) and its revocation fingerprint (nil when the certificate cannot be parsed: refused).
    func clientCertificate() async -> (nodeName: String?, fingerprint: String?)? {
        guard
            let certificate = try? await channel.pipeline.handler(type: NIOSSLServerHandler.self)
                .map({ $0.peerCertificate }).get() ?? nil,
            let der = try? certificate.toDERBytes()
        else { return nil }
        return (
            RegistryCertificateAuthority.nodeName(ofCertificateDER: der),
            RegistryCertificateAuthority.revocationFingerprint(ofCertificateDER: der)
        )
    }
}
