import Crypto
import Foundation
import SwiftASN1

/// The same certificate with its ECDSA signature (r, s) replaced by (r, n − s): another valid signature of the
/// same signed part, so TLS accepts it, but the DER (and any hash of it) differs. How the holder of a revoked
/// certificate would try to look like a new one.
enum MalleatedCertificate {
    /// The order n of the P-256 group, big-endian.
    static let order: [UInt8] = Array(
        hex: "FFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551")

    static func flip(pem: String) throws -> String {
        let der = try PEMDocument(pemString: pem).derBytes
        let root = try DER.parse(der)
        guard case .constructed(let children) = root.content else { throw ASN1Error.invalidASN1Object(reason: "no SEQUENCE") }
        let parts = Array(children)
        guard parts.count == 3, case .primitive(let bits) = parts[2].content, bits.first == 0 else {
            throw ASN1Error.invalidASN1Object(reason: "not tbs, algorithm, signature")
        }
        let signature = try P256.Signing.ECDSASignature(derRepresentation: Array(bits.dropFirst()))
        let raw = Array(signature.rawRepresentation)
        let flipped = try P256.Signing.ECDSASignature(rawRepresentation: raw[0..<32] + subtract(order, Array(raw[32...])))
        let bitString = [UInt8(0x03)] + length(flipped.derRepresentation.count + 1) + [0] + Array(flipped.derRepresentation)
        let body = Array(parts[0].encodedBytes) + Array(parts[1].encodedBytes) + bitString
        let certificate = [UInt8(0x30)] + length(body.count) + body
        return PEMDocument(type: "CERTIFICATE", derBytes: certificate).pemString
    }

    /// a − b for equal-length big-endian numbers with a > b.
    static func subtract(_ a: [UInt8], _ b: [UInt8]) -> [UInt8] {
        var result = [UInt8](repeating: 0, count: a.count)
        var borrow = 0
        for i in stride(from: a.count - 1, through: 0, by: -1) {
            var d = Int(a[i]) - Int(b[i]) - borrow
            borrow = d < 0 ? 1 : 0
            if d < 0 { d += 256 }
            result[i] = UInt8(d)
        }
        return result
    }

    /// A DER length.
    static func length(_ n: Int) -> [UInt8] {
        if n < 0x80 { return [UInt8(n)] }
        var bytes: [UInt8] = []
        var value = n
        while value > 0 { bytes.insert(UInt8(value & 0xFF), at: 0); value >>= 8 }
        return [0x80 | UInt8(bytes.count)] + bytes
    }
}

extension Array where Element == UInt8 {
    init(hex: String) {
        var bytes: [UInt8] = []
        var index = hex.startIndex
        while index < hex.endIndex {
            let next = hex.index(index, offsetBy: 2)
            bytes.append(UInt8(hex[index..<next], radix: 16)!)
            index = next
        }
        self = bytes
    }
}
