import Evpl
#if canImport(Glibc)
import Glibc
#endif

// A file server over TCP: a client sends a file's name (relative to the
// served folder) on one line; the answer is `OK <bytes>` on a line, then
// the file, read by the block engine into pool buffers and sent as those
// same buffers, or `ERROR <reason>`. A slow reader holds at most a few
// chunks in memory: the next read waits for `writable`.
//
// `FileServer FOLDER [PORT]`: prints `listening on ADDRESS`, stops on
// SIGINT or SIGTERM.

/// One connection's transfer in progress.
final class Transfer {
    static let chunkBuffers = 16
    static let queuedLimit = 4 << 20

    let connection: Connection
    let device: BlockDevice
    /// The size announced in the `OK` line: a file that grows meanwhile
    /// still sends exactly this much.
    let size: UInt64
    var offset: UInt64 = 0
    var reading = false

    init(connection: Connection, device: BlockDevice, size: UInt64) {
        self.connection = connection
        self.device = device
        self.size = size
    }

    /// Reads the next chunk, unless the file is done, a read is running or
    /// the peer has not taken what is queued yet.
    func continueReading() {
        guard !reading, !connection.isClosed, connection.queuedBytes < Self.queuedLimit else { return }
        guard offset < size else {
            finish()
            return
        }
        var chunk: [IOVec] = []
        var planned: UInt64 = 0
        while chunk.count < Self.chunkBuffers, offset + planned < size, var iovec = try? device.loop.bufferPool.allocate() {
            iovec.length = Int(min(UInt64(iovec.length), size - offset - planned))
            planned += UInt64(iovec.length)
            chunk.append(iovec)
        }
        guard !chunk.isEmpty else {
            fail("out of buffers")
            return
        }
        reading = true
        // Weak: a connection that ends drops its transfer while a read may be in flight.
        device.handler = { [weak self] _, completion in
            guard let self else {
                for iovec in chunk { iovec.release() }
                return
            }
            reading = false
            if let error = completion.error {
                for iovec in chunk { iovec.release() }
                fail("\(error)")
                return
            }
            offset += UInt64(completion.bytes)
            // The same buffers go out, without a copy; the connection takes our references.
            try? connection.send(taking: chunk)
            continueReading()
        }
        device.read(into: chunk, at: offset, tag: 0)
    }

    private func fail(_ reason: String) {
        device.close()
        connection.context = nil
        connection.close()
        print("transfer failed: \(reason)")
    }

    private func finish() {
        device.close()
        connection.context = nil
        connection.resumeReceiving()
    }
}

func serve(_ connection: Connection, folder: String) {
    connection.segmenter = Segmenters.delimited(by: [UInt8(ascii: "\n")], maximumLength: 4096)
    connection.handler = { connection, event in
        switch event {
        case .received(let line):
            let name = String(decoding: line.array.dropLast(), as: UTF8.self)
            guard !name.isEmpty, !name.hasPrefix("/"), !name.split(separator: "/").contains("..") else {
                try? Array("ERROR a name inside the folder, please\n".utf8).withUnsafeBytes { try connection.send(copying: $0) }
                return
            }
            do {
                let device = try connection.loop.openBlockDevice(folder + "/" + name, engine: .psync)
                let size = device.size
                try Array("OK \(size)\n".utf8).withUnsafeBytes { try connection.send(copying: $0) }
                let transfer = Transfer(connection: connection, device: device, size: size)
                connection.context = transfer
                // One file at a time: the next name is read once this one is sent.
                connection.pauseReceiving()
                transfer.continueReading()
            } catch {
                try? Array("ERROR \(error)\n".utf8).withUnsafeBytes { try connection.send(copying: $0) }
            }
        case .writable:
            (connection.context as? Transfer)?.continueReading()
        case .disconnected:
            (connection.context as? Transfer)?.device.close()
            connection.context = nil
        default:
            break
        }
    }
}

let arguments = CommandLine.arguments.dropFirst()
guard let folder = arguments.first else {
    print("usage: FileServer FOLDER [PORT]")
    exit(2)
}
do {
    let signals = try TerminationSignals()
    let loop = try EventLoop()
    let listener = try Listener(address: SocketAddress(host: "127.0.0.1", port: UInt16(arguments.dropFirst().first ?? "") ?? 0))
    loop.attach(to: listener) { serve($0, folder: folder) }
    let watch = try loop.watch(fd: signals.fd, interest: .readable) { watch, _ in
        watch.remove()
        listener.close()
        loop.shutdownGracefully(timeout: .seconds(5))
    }
    print("listening on \(listener.address)")
    fflush(nil)
    loop.run()
    _ = watch
} catch {
    print("FileServer: \(error)")
    exit(1)
}
