import NIOCore

/// Cuts a streaming watch's body into newline-terminated lines: the embedded registry's NDJSON stream and the etcd
/// JSON gateway's watch stream. Chunks may split a line anywhere; blank lines are dropped.
public struct LineSplitter: Sendable {
    /// Longest line accepted before the stream is considered broken.
    public let maxLineBytes: Int
    private var buffer = ByteBuffer()

    /// A stream line exceeded the limit: the stream is broken or hostile, and is dropped rather than buffered.
    public struct LineTooLong: Error, CustomStringConvertible {
        public let limit: Int
        public var description: String { "stream line longer than \(limit) bytes" }
    }

    public init(maxLineBytes: Int) {
        self.maxLineBytes = maxLineBytes
    }

    public mutating func append(_ chunk: ByteBuffer) {
        if buffer.readableBytes == 0 {
            buffer = chunk  // the common case: a chunk holds whole lines; no copy
        } else {
            if buffer.readerIndex > 64 * 1024 { buffer.discardReadBytes() }
            var chunk = chunk
            buffer.writeBuffer(&chunk)
        }
    }

    /// The next complete line without its terminator, or nil until more bytes arrive.
    public mutating func nextLine() throws(LineTooLong) -> ByteBuffer? {
        while let newline = buffer.readableBytesView.firstIndex(of: UInt8(ascii: "\n")) {
            let line = buffer.readSlice(length: newline - buffer.readerIndex)!
            buffer.moveReaderIndex(forwardBy: 1)
            if line.readableBytesView.allSatisfy({ $0 == UInt8(ascii: " ") || $0 == UInt8(ascii: "\r") }) { continue }
            return line
        }
        if buffer.readableBytes > maxLineBytes { throw LineTooLong(limit: maxLineBytes) }
        if buffer.readableBytes == 0 { buffer.clear() }
        return nil
    }
}
