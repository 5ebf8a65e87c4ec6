#if canImport(Glibc)
import Glibc
#endif

/// One block I/O request, recycled by its device: the caller's IOVecs
/// (retained until completion), the iovec array the kernel reads, and a
/// bounce buffer when `O_DIRECT` needs aligned memory the caller's buffers
/// are not.
final class BlockRequest: URingOperationTarget {
    /// Most IOVecs one request may carry.
    static let maxVectors = 64

    @exclusivity(unchecked) var operation: BlockCompletion.Operation = .read
    @exclusivity(unchecked) var offset: UInt64 = 0
    @exclusivity(unchecked) var length = 0
    @exclusivity(unchecked) var tag: UInt64 = 0
    /// The task awaiting this request, for async submissions; callback
    /// submissions complete through the device's handler.
    @exclusivity(unchecked) var continuation: UnsafeContinuation<BlockCompletion, Never>?
    @exclusivity(unchecked) var iovecs: [IOVec] = []
    let vectors: UnsafeMutablePointer<iovec>
    @exclusivity(unchecked) var vectorCount = 0
    /// Aligned memory standing in for unaligned caller buffers under `O_DIRECT`.
    @exclusivity(unchecked) var bounce: UnsafeMutableRawPointer?
    @exclusivity(unchecked) var bounceCapacity = 0
    /// The device, while the request is in flight (the device keeps
    /// itself alive meanwhile).
    @exclusivity(unchecked) unowned(unsafe) var device: BlockDevice?
    /// Bytes moved by earlier attempts of a read or write the kernel did in
    /// part: the next attempt starts after them.
    @exclusivity(unchecked) var transferred = 0
    /// Attempts in a row that ended in `EINTR` or `EAGAIN`.
    @exclusivity(unchecked) var retries = 0
    /// Whether `vectors` describe the bounce buffer.
    @exclusivity(unchecked) private(set) var usedBounce = false

    /// Whether the request moves data (a read or a write).
    var isTransfer: Bool { operation == .read || operation == .write }

    /// Where the next attempt starts.
    var position: UInt64 { offset + UInt64(transferred) }
    /// Bytes the next attempt moves.
    var remaining: Int { length - transferred }

    override init() {
        vectors = .allocate(capacity: Self.maxVectors)
        iovecs.reserveCapacity(Self.maxVectors)
        super.init()
    }

    deinit {
        vectors.deallocate()
        free(bounce)
    }

    /// Holds a reference to each of the caller's buffers until completion.
    func take(_ buffers: [IOVec]) {
        for index in buffers.indices {
            buffers[index].retain()
            iovecs.append(buffers[index])
        }
    }

    /// Holds a reference to the caller's buffer until completion.
    func take(_ buffer: IOVec) {
        buffer.retain()
        iovecs.append(buffer)
    }

    /// Describes the caller's buffers after the first `transferred` bytes
    /// in `vectors`, or the same range of a bounce buffer of the request's
    /// length when `alignment` is not met. Returns false when no aligned
    /// memory could be had.
    func prepareVectors(alignment: Int) -> Bool {
        let aligned = alignment <= 1 || iovecs.allSatisfy {
            Int(bitPattern: $0.baseAddress) % alignment == 0 && $0.length % alignment == 0
        }
        if aligned {
            var skip = transferred
            vectorCount = 0
            for index in iovecs.indices {
                let iovec = iovecs[index]
                if skip >= iovec.length {
                    skip -= iovec.length
                    continue
                }
                vectors[vectorCount] = Glibc.iovec(iov_base: iovec.baseAddress + skip, iov_len: iovec.length - skip)
                vectorCount += 1
                skip = 0
            }
            usedBounce = false
            return true
        }
        if transferred > 0 {
            // A later attempt: the bounce buffer holds the request already.
            vectors[0] = Glibc.iovec(iov_base: bounce.unsafelyUnwrapped + transferred, iov_len: remaining)
            return true
        }
        if bounceCapacity < length {
            free(bounce)
            bounce = nil
            bounceCapacity = 0
            let rounded = (length + alignment - 1) / alignment * alignment
            guard posix_memalign(&bounce, alignment, rounded) == 0 else { return false }
            bounceCapacity = rounded
        }
        if operation == .write {
            var position = 0
            for iovec in iovecs {
                (bounce.unsafelyUnwrapped + position).copyMemory(from: iovec.baseAddress, byteCount: iovec.length)
                position += iovec.length
            }
        }
        vectors[0] = Glibc.iovec(iov_base: bounce, iov_len: length)
        vectorCount = 1
        usedBounce = true
        return true
    }

    /// After a bounced read: copies the data into the caller's buffers.
    func copyBounceOut(_ count: Int) {
        var position = 0
        for iovec in iovecs where position < count {
            let piece = min(iovec.length, count - position)
            iovec.baseAddress.copyMemory(from: bounce.unsafelyUnwrapped + position, byteCount: piece)
            position += piece
        }
    }

    override func complete(_ operation: UInt8, result: Int32, flags: UInt32, received: IOVec?) {
        received?.release()
        device?.finish(self, result: Int(result))
    }

    override func abandon(_ operation: UInt8) {
        // The device may let itself, and so this request, go.
        withExtendedLifetime(self) { device?.abandon(self) }
    }
}
