import ArgumentParser
import IPsecPrimitives
import Keys

#if canImport(Glibc)
    import Glibc
#endif

/// `ipsec-agent key`: make and check key files (docs/key-file.md).
struct KeyCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "key",
        abstract: "Generate and check IPsec key files.",
        subcommands: [Generate.self, Check.self]
    )

    /// Algorithm choices of `key generate`.
    enum AlgorithmChoice: String, ExpressibleByArgument, CaseIterable {
        case aead
        case cbcHMAC = "cbc-hmac"

        var family: KeyGenerator.Family {
            switch self {
            case .aead: .aead
            case .cbcHMAC: .cbcHMAC
            }
        }
    }

    struct Generate: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Generate a random key line (system CSPRNG).",
            discussion: """
                Without --out, prints the line. With --out, replaces FILE atomically (temporary file in the \
                same directory, then rename) with mode 0600. Without --spi, the SPI follows the active key \
                of an existing --out file (15 wraps to 1), or is 1 when FILE does not exist; an existing FILE that \
                is not a valid key file is an error (pass --spi).
                """
        )

        @Option(help: "Key ID (SPI), 1…15.")
        var spi: Int?

        @Option(help: "aead: rfc4106(gcm(aes)) ICV 128; cbc-hmac: hmac(sha256) + cbc(aes).")
        var algorithm: AlgorithmChoice = .aead

        @Option(name: .customLong("key-bits"), help: "AES key size: 128, 192 or 256.")
        var keyBits: Int = 256

        @Option(help: "Write the key file here instead of printing it.")
        var out: String?

        func validate() throws {
            if let spi, KeyID(spi) == nil {
                throw ValidationError("--spi must be 1…15, got \(spi)")
            }
            guard KeyGenerator.aesKeyBits.contains(keyBits) else {
                throw ValidationError("--key-bits must be 128, 192 or 256, got \(keyBits)")
            }
        }

        func run() throws {
            let id: KeyID
            do {
                id = try spi.flatMap { KeyID($0) } ?? nextID()
            } catch {
                KeyCommand.printError("error: \(error)")
                throw ExitCode.failure
            }
            let key = KeyGenerator.generate(
                id: id, algorithm: KeyGenerator.algorithm(algorithm.family, aesKeyBits: keyBits))
            guard let out else {
                print(KeyFileWriter.line(for: key))
                return
            }
            do {
                try KeyFileWriter.write([key], to: out)
            } catch {
                KeyCommand.printError("error: \(error)")
                throw ExitCode.failure
            }
            print(KeyCommand.summary(of: key))
        }

        /// The successor of the active key in an existing --out file; 1 when there is no such file. A file that
        /// exists but cannot be read as a key file is an error: guessing 1 could move the key ID backwards.
        func nextID() throws -> KeyID {
            guard let out else { return KeyID(1)! }
            var info = stat()
            if lstat(out, &info) != 0 && errno == ENOENT { return KeyID(1)! }
            do {
                return try KeyFileParser().load(path: out).activeKey.id.next
            } catch {
                throw ValidationError("cannot take the next key ID from \(out) (\(error)); fix the file or pass --spi")
            }
        }
    }

    struct Check: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Check a key file; print its active key's SPI, algorithm, key bits and fingerprint.",
            discussion: "Exit status 0 when the file is valid (and, with --previous, a valid rotation), 1 otherwise."
        )

        @Argument(help: "The key file.")
        var file: String

        @Option(help: "The key file currently in use: also check the rotation rules from it to FILE.")
        var previous: String?

        func run() throws {
            let parser = KeyFileParser()
            do {
                let keyFile = try parser.load(path: file)
                if keyFile.insecurePermissions {
                    KeyCommand.printError("warning: \(file) is accessible by group or others; use mode 0600 or 0400")
                }
                var line = KeyCommand.summary(of: keyFile.activeKey)
                if let previous {
                    let current = try parser.load(path: previous).activeKey
                    let rotation = try KeyRotationRule.check(new: keyFile.activeKey, current: current)
                    if !rotation.isSuccessor {
                        KeyCommand.printError(
                            "warning: \(rotation); the successor of \(current.id) is \(current.id.next)")
                    }
                    line += ", \(rotation)"
                }
                print(line)
            } catch {
                KeyCommand.printError("error: \(error)")
                throw ExitCode.failure
            }
        }
    }

    /// One line: SPI, algorithm, key bits, fingerprint. Never key bytes.
    static func summary(of key: IPsecKey) -> String {
        let bits: String =
            switch key.algorithm {
            case .aesGCM(let keyBits, _): "\(keyBits)-bit key"
            case .cbcHMAC(_, let authKeyBytes, let aesKeyBits):
                "\(aesKeyBits)-bit key + \(authKeyBytes * 8)-bit auth key"
            }
        return "spi \(key.id), \(key.algorithm.identifier), \(bits), fingerprint \(key.fingerprint)"
    }

    static func printError(_ message: String) {
        let bytes = Array((message + "\n").utf8)
        _ = bytes.withUnsafeBytes { write(STDERR_FILENO, $0.baseAddress, $0.count) }
    }
}
