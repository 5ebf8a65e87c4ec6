import Evpl
#if canImport(Glibc)
import Glibc
#endif

/// The `blk-serve` protocol on the wire, all integers big-endian.
///
/// A request is 12 bytes: the offset (8 bytes) and the length (4 bytes). An
/// answer is an 8-byte header, the status (0 or an errno, 4 bytes) and the
/// count of bytes that follow it (4 bytes), then those bytes.
///
/// A range is answered with status 0 and its bytes; one that crosses the
/// end of the file with the bytes up to the end, and one that starts at or
/// past the end with none (the count says how many follow). A request that
/// cannot be served (``Request/rejection``) is answered with `EINVAL` and
/// no bytes, and a read that fails with its errno (`EIO` when it has none)
/// and no bytes; either way the connection goes on.
enum BlockRangeWire {
    static let requestSize = 12
    static let answerHeaderSize = 8
    /// The longest range one request may ask for.
    static let largestRange = 16 << 20

    /// One request for a byte range.
    struct Request: Equatable {
        var offset: UInt64
        var length: UInt32

        init(offset: UInt64, length: UInt32) {
            self.offset = offset
            self.length = length
        }

        /// Decodes a whole request (exactly ``requestSize`` bytes, as the
        /// server's fixed-length segmenter delivers it).
        init(decoding message: ReceivedBytes) {
            precondition(message.count == requestSize, "a request is \(requestSize) bytes, not \(message.count)")
            offset = UInt64(message.loadBigEndianUInt32(at: 0)) << 32 | UInt64(message.loadBigEndianUInt32(at: 4))
            length = message.loadBigEndianUInt32(at: 8)
        }

        /// EINVAL when the request cannot be served: an empty range, one
        /// longer than ``largestRange``, or one that ends past the largest
        /// file offset; `nil` when it can.
        var rejection: Int32? {
            guard length > 0, length <= largestRange, offset <= UInt64(Int64.max) - UInt64(length) else { return EINVAL }
            return nil
        }

        /// The request's 12 bytes.
        var encoded: [UInt8] {
            var bytes: [UInt8] = []
            bytes.reserveCapacity(requestSize)
            appendBigEndian(offset, to: &bytes)
            appendBigEndian(length, to: &bytes)
            return bytes
        }
    }

    /// Calls `body` with the 8 bytes of an answer's header: `status` (0 or
    /// an errno) and the count of bytes that follow. Nothing is allocated.
    static func withAnswerHeader<Result>(status: UInt32, count: Int, _ body: (UnsafeRawBufferPointer) -> Result) -> Result {
        withUnsafeBytes(of: (UInt64(status) << 32 | UInt64(UInt32(count))).bigEndian, body)
    }

    private static func appendBigEndian(_ value: some FixedWidthInteger, to bytes: inout [UInt8]) {
        withUnsafeBytes(of: value.bigEndian) { bytes.append(contentsOf: $0) }
    }
}
