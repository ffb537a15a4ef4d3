import NIOCore

/// Cuts a byte stream into newline-terminated lines (the framing of the gateway's streams).
/// Chunks may split a line anywhere; blank lines are dropped.
struct JSONLineSplitter: Sendable {
    /// Longest line accepted before the stream is considered broken.
    let maxLineBytes: Int
    private var buffer = ByteBuffer()

    struct LineTooLong: Error, CustomStringConvertible {
        let limit: Int
        var description: String { "stream line longer than \(limit) bytes" }
    }

    init(maxLineBytes: Int) {
        self.maxLineBytes = maxLineBytes
    }

    mutating func append(_ chunk: ByteBuffer) {
        var chunk = chunk
        buffer.writeBuffer(&chunk)
    }

    /// The next complete line without its terminator, or nil until more bytes arrive.
    mutating func nextLine() throws(LineTooLong) -> ByteBuffer? {
        while let newline = buffer.readableBytesView.firstIndex(of: UInt8(ascii: "\n")) {
            let length = newline - buffer.readerIndex
            let line = buffer.readSlice(length: length)!
            buffer.moveReaderIndex(forwardBy: 1)
            if buffer.readerIndex > 64 * 1024 { buffer.discardReadBytes() }
            if line.readableBytesView.allSatisfy({ $0 == UInt8(ascii: " ") || $0 == UInt8(ascii: "\r") }) { continue }
            return line
        }
        if buffer.readableBytes > maxLineBytes { throw LineTooLong(limit: maxLineBytes) }
        return nil
    }
}
