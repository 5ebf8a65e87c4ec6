/// The position-keyed pattern `evpl blk --verify` writes and checks: each
/// 8-byte word is a function of its byte offset in the file, so any block
/// has one right content whenever and however often it was written.
enum BlockPattern {
    @inline(__always)
    static func word(at offset: UInt64) -> UInt64 {
        (offset &* 0x9E37_79B9_7F4A_7C15) ^ 0xD1B5_4A32_D192_ED03
    }

    /// Fills `length` bytes at `memory` with the pattern of file bytes from
    /// `offset` (both multiples of 8).
    static func fill(_ memory: UnsafeMutableRawPointer, length: Int, fileOffset offset: UInt64) {
        let words = memory.assumingMemoryBound(to: UInt64.self)
        for index in 0..<(length / 8) {
            words[index] = word(at: offset + UInt64(index * 8))
        }
    }

    /// The file offset of the first byte that does not match, or `nil`.
    static func firstMismatch(_ memory: UnsafeRawPointer, length: Int, fileOffset offset: UInt64) -> UInt64? {
        let words = memory.assumingMemoryBound(to: UInt64.self)
        for index in 0..<(length / 8) where words[index] != word(at: offset + UInt64(index * 8)) {
            let expected = word(at: offset + UInt64(index * 8))
            var difference = words[index] ^ expected
            var byte: UInt64 = 0
            while difference & 0xFF == 0 {
                difference >>= 8
                byte += 1
            }
            return offset + UInt64(index * 8) + byte
        }
        return nil
    }
}
