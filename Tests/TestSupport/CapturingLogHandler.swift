import Logging
import Synchronization

/// A swift-log handler that keeps every rendered line (level, message, sorted metadata, source, function), for
/// assertions such as "no key bytes or credentials reach the logs".
public struct CapturingLogHandler: LogHandler {
    public final class Lines: Sendable {
        private let lines = Mutex<[String]>([])
        public init() {}
        public func append(_ line: String) { lines.withLock { $0.append(line) } }
        public var all: [String] { lines.withLock { $0 } }
    }

    public let lines: Lines
    public var metadata: Logger.Metadata = [:]
    public var metadataProvider: Logger.MetadataProvider?
    public var logLevel: Logger.Level = .trace

    public init(lines: Lines) { self.lines = lines }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    public func log(event: LogEvent) {
        let merged = metadata.merging(event.metadata ?? [:]) { $1 }
        let rendered = merged.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: " ")
        lines.append("\(event.level) \(event.message) \(rendered) \(event.source) \(event.function)")
    }

    /// A logger writing into `lines`.
    public static func logger(_ lines: Lines, label: String = "test") -> Logger {
        Logger(label: label) { _ in CapturingLogHandler(lines: lines) }
    }
}
