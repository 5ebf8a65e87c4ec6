import Evpl
#if canImport(Glibc)
import Glibc
#endif

// FileServer through the async API, one task per connection: read a name
// on a line, answer `OK <bytes>` and the file (read by the block engine
// into pool buffers and written as those same buffers), or `ERROR <reason>`.
// A slow reader holds at most a few chunks in memory: the write of each
// chunk waits for room before the next read starts.
//
// `AsyncFileServer FOLDER [PORT]`: prints `listening on ADDRESS`, stops on
// SIGINT or SIGTERM.

/// Sends one file, a chunk of up to 16 buffers at a time.
nonisolated(nonsending) func send(_ path: String, on connection: AsyncConnection) async throws(EvplError) {
    let loop = connection.connection.loop
    let device = try loop.openBlockDevice(path, engine: .psync)
    defer { device.close() }
    // The size announced in the `OK` line: a file that grows meanwhile
    // still sends exactly this much.
    let size = device.size
    try await connection.write(Array("OK \(size)\n".utf8))
    var offset: UInt64 = 0
    while offset < size {
        var chunk: [IOVec] = []
        var planned: UInt64 = 0
        while chunk.count < 16, offset + planned < size {
            var iovec = try loop.bufferPool.allocate()
            iovec.length = Int(min(UInt64(iovec.length), size - offset - planned))
            planned += UInt64(iovec.length)
            chunk.append(iovec)
        }
        do throws(EvplError) {
            offset += UInt64(try await device.read(into: chunk, at: offset))
        } catch {
            for iovec in chunk { iovec.release() }
            throw error
        }
        // The connection takes our references to the buffers it sends.
        try await connection.write(taking: chunk)
    }
}

let arguments = CommandLine.arguments.dropFirst()
guard let folder = arguments.first else {
    print("usage: AsyncFileServer FOLDER [PORT]")
    exit(2)
}
do {
    let signals = try TerminationSignals()
    let listener = try Listener(address: SocketAddress(host: "127.0.0.1", port: UInt16(arguments.dropFirst().first ?? "") ?? 0))
    let pool = try EventLoopThreadPool<Void>(count: 1) { _, _ in }
    let lines = { @Sendable () -> Segmenter? in Segmenters.delimited(by: [UInt8(ascii: "\n")], maximumLength: 4096) }
    let server = Task.detached {
        await listener.serve(on: pool.executors, segmenter: lines) { connection in
            // One file at a time: the next name is read once this one is sent.
            while let line = try await connection.receive() {
                let name = String(decoding: line.array.dropLast(), as: UTF8.self)
                guard !name.isEmpty, !name.hasPrefix("/"), !name.split(separator: "/").contains("..") else {
                    try await connection.write(Array("ERROR a name inside the folder, please\n".utf8))
                    continue
                }
                do throws(EvplError) {
                    try await send(folder + "/" + name, on: connection)
                } catch {
                    // A file that cannot be opened is an answer; anything else ends the connection.
                    guard error.operation.hasPrefix("open") else { throw error }
                    try await connection.write(Array("ERROR \(error)\n".utf8))
                }
            }
        }
    }
    print("listening on \(listener.address)")
    fflush(nil)
    signals.wait()  // the main thread waits; connections run on the loop
    server.cancel()
    listener.close()
    _ = await pool.gracefulShutdown(timeout: .seconds(5))
} catch {
    print("AsyncFileServer: \(error)")
    exit(1)
}
