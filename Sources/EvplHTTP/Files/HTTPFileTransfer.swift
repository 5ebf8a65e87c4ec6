import Evpl

/// One file's bytes on their way into a response: read by the block engine
/// into pool buffers, sent as the same buffers, one read at a time and only
/// while the connection's send queue is under its low watermark.
final class HTTPFileTransfer {
    /// Buffers per read: 1 MiB with the default 64 KiB buffers.
    private static let buffersPerRead = 16

    private let exchange: HTTPServerConnection
    private let device: BlockDevice
    private var offset: UInt64
    private let end: UInt64
    /// The buffers of the read in flight.
    private var reading: [IOVec] = []
    private var isReading = false
    private var cancelled = false

    /// Sends bytes `first..<end` of `device` as the body of the response
    /// whose head `exchange` has written.
    init(exchange: HTTPServerConnection, device: BlockDevice, from first: UInt64, to end: UInt64) {
        self.exchange = exchange
        self.device = device
        self.offset = first
        self.end = end
        // The device holds the transfer until ``stop()``: a read may finish after the connection has gone.
        device.handler = { _, completion in self.completed(completion) }
    }

    /// Starts the next read, unless one is running, the body is all sent
    /// (the response then ends), or the peer has yet to take what is queued.
    func continueReading() {
        guard !isReading, !cancelled else { return }
        guard offset < end else {
            complete()
            return
        }
        let connection = exchange.connection
        guard connection.queuedBytes < connection.loop.config.sendLowWatermark else { return }
        reading = Self.buffers(for: offset..<end, from: connection.loop.bufferPool)
        guard !reading.isEmpty else {
            // The pool is spent: the connection closes short of its
            // Content-Length, which tells the client the body is incomplete.
            abandon()
            return
        }
        isReading = true
        device.read(into: reading, at: offset, tag: 0)
    }

    /// The connection is over: the transfer stops once no read is in flight.
    func cancel() {
        cancelled = true
        if exchange.context === self { exchange.context = nil }
        if !isReading { stop() }
    }

    private func completed(_ completion: BlockCompletion) {
        isReading = false
        var chunk = reading
        reading = []
        if cancelled {
            for iovec in chunk { iovec.release() }
            stop()
            return
        }
        guard completion.error == nil, completion.bytes > 0 else {
            // A read error, or the file shrank under the response.
            for iovec in chunk { iovec.release() }
            abandon()
            return
        }
        Self.trim(&chunk, to: completion.bytes)
        offset += UInt64(completion.bytes)
        do {
            try exchange.writeBody(taking: chunk)
        } catch {
            cancel()
            return
        }
        continueReading()
    }

    /// Pool buffers for the next read of `range`: up to ``buffersPerRead``,
    /// the last cut to the range's end; none when the pool is spent.
    static func buffers(for range: Range<UInt64>, from pool: BufferPool) -> [IOVec] {
        var chunk: [IOVec] = []
        chunk.reserveCapacity(buffersPerRead)
        var planned: UInt64 = 0
        while chunk.count < buffersPerRead, range.lowerBound + planned < range.upperBound, var iovec = try? pool.allocate() {
            iovec.length = Int(min(UInt64(iovec.length), range.upperBound - range.lowerBound - planned))
            planned += UInt64(iovec.length)
            chunk.append(iovec)
        }
        return chunk
    }

    /// Cuts `chunk` to the `bytes` a read filled, releasing the buffers it left empty.
    static func trim(_ chunk: inout [IOVec], to bytes: Int) {
        var left = bytes
        for index in chunk.indices {
            chunk[index].length = min(chunk[index].length, left)
            left -= chunk[index].length
        }
        while let last = chunk.last, last.length == 0 {
            last.release()
            chunk.removeLast()
        }
    }

    private func complete() {
        stop()
        if exchange.context === self { exchange.context = nil }
        try? exchange.end()
    }

    /// Closes the connection mid-body: nothing else can tell the client.
    private func abandon() {
        cancel()
        exchange.connection.close()
    }

    private func stop() {
        device.close()
        device.handler = { _, _ in }
    }
}
