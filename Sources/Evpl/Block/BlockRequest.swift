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
    @exclusivity(unchecked) var iovecs: [IOVec] = []
    let vectors: UnsafeMutablePointer<iovec>
    @exclusivity(unchecked) var vectorCount = 0
    /// Aligned memory standing in for unaligned caller buffers under `O_DIRECT`.
    @exclusivity(unchecked) var bounce: UnsafeMutableRawPointer?
    @exclusivity(unchecked) var bounceCapacity = 0
    /// The device, kept alive while the request is in flight.
    @exclusivity(unchecked) var device: BlockDevice?

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

    /// Describes the caller's buffers in `vectors`, or a bounce buffer of the
    /// same total length when `alignment` is not met. Returns false when no
    /// aligned memory could be had.
    func prepareVectors(alignment: Int) -> Bool {
        let aligned = alignment <= 1 || iovecs.allSatisfy {
            Int(bitPattern: $0.baseAddress) % alignment == 0 && $0.length % alignment == 0
        }
        if aligned {
            for index in iovecs.indices {
                vectors[index] = Glibc.iovec(iov_base: iovecs[index].baseAddress, iov_len: iovecs[index].length)
            }
            vectorCount = iovecs.count
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
        return true
    }

    /// Whether the request went through the bounce buffer.
    var usedBounce: Bool { vectorCount == 1 && bounce != nil && vectors[0].iov_base == bounce }

    /// After a bounced read: copies the data into the caller's buffers.
    func copyBounceOut(_ count: Int) {
        var position = 0
        for iovec in iovecs where position < count {
            let piece = min(iovec.length, count - position)
            iovec.baseAddress.copyMemory(from: bounce.unsafelyUnwrapped + position, byteCount: piece)
            position += piece
        }
    }

    override func complete(_ operation: UInt8, result: Int32, flags: UInt32, buffer: Buffer?) {
        buffer?.release()
        device?.finish(self, result: Int(result))
    }
}
