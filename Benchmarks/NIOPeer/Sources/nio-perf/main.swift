// nio-perf: the SwiftNIO peer of `evpl perf`, for side-by-side runs.
//
//   nio-perf server --port P [--udp | --async] [--threads N]
//                   [--tls --tls-cert PEM --tls-key PEM]
//   nio-perf client --port P [--udp | --async] [--mode pingpong|stream|handshake]
//                   [--size BYTES] [--depth N] [--connections N] [--threads N]
//                   [--duration SECONDS] [--tls --tls-ca PEM [--tls-verify-host NAME]]
//
// --async: TCP ping-pong through NIOAsyncChannel and tasks instead of
// channel handlers. --tls: TLS 1.3 through NIO-SSL. --mode handshake: each
// connection opens, makes one round trip and closes, then the next opens;
// ops_per_sec is connections (with --tls, full handshakes) per second.
//
// The server prints "listening on 127.0.0.1:P" when ready and runs until
// killed. The client prints {"ops_per_sec":…,"bytes_per_sec":…} like
// `evpl perf client --json`. TCP connections open with the same 8-byte
// handshake as evpl's, so each client can drive either server.

import NIOCore
import NIOPosix
#if canImport(Glibc)
import Glibc
#endif

/// Writes `message` and a newline to standard error.
func printError(_ message: String) {
    let line = message + "\n"
    _ = line.withCString { write(2, $0, strlen($0)) }
}

struct Options {
    var role = ""
    var port = 0
    var udp = false
    var async = false
    var mode = "pingpong"
    var size = 64
    var depth = 1
    var connections = 1
    var threads = 1
    var duration = 5.0
    var tls = false
    var tlsCertificate = ""
    var tlsKey = ""
    var tlsAuthority = ""
    var tlsServerName = "localhost"

    init(_ arguments: [String]) {
        guard let role = arguments.first else { Self.usage() }
        self.role = role
        var rest = arguments.dropFirst().makeIterator()
        while let flag = rest.next() {
            if flag == "--udp" { udp = true; continue }
            if flag == "--async" { async = true; continue }
            if flag == "--tls" { tls = true; continue }
            guard let value = rest.next() else { Self.usage() }
            switch flag {
            case "--port": port = Int(value) ?? 0
            case "--mode": mode = value
            case "--size": size = Int(value) ?? 0
            case "--depth": depth = Int(value) ?? 0
            case "--connections": connections = Int(value) ?? 0
            case "--threads": threads = Int(value) ?? 0
            case "--duration": duration = Double(value) ?? 0
            case "--tls-cert": tlsCertificate = value
            case "--tls-key": tlsKey = value
            case "--tls-ca": tlsAuthority = value
            case "--tls-verify-host": tlsServerName = value
            default: Self.usage()
            }
        }
        guard ["server", "client"].contains(role), ["pingpong", "stream", "handshake"].contains(mode),
              size > 0, depth > 0, connections > 0, threads > 0, duration > 0,
              (role == "server" || port > 0), !(udp && mode == "stream"),
              !(async && (udp || mode != "pingpong")), !(udp && (tls || mode == "handshake")),
              !(tls && async),
              !tls || (role == "server" ? !tlsCertificate.isEmpty && !tlsKey.isEmpty : !tlsAuthority.isEmpty) else { Self.usage() }
    }

    /// The TLS set-up `--tls` asks for, `nil` without it.
    func tlsSetup() throws -> TLSSetup? {
        guard tls else { return nil }
        return role == "server"
            ? try TLSSetup.server(certificate: tlsCertificate, key: tlsKey)
            : try TLSSetup.client(authority: tlsAuthority, name: tlsServerName)
    }

    static func usage() -> Never {
        printError("usage: nio-perf server|client --port P [--udp | --async] [--mode pingpong|stream|handshake] [--size B] [--depth N] [--connections N] [--threads N] [--duration S] [--tls (--tls-cert PEM --tls-key PEM | --tls-ca PEM [--tls-verify-host NAME])]")
        exit(2)
    }
}

func monotonicSeconds() -> Double {
    var now = timespec()
    clock_gettime(CLOCK_MONOTONIC, &now)
    return Double(now.tv_sec) + Double(now.tv_nsec) / 1e9
}

func serve(_ options: Options, group: MultiThreadedEventLoopGroup) throws {
    let channel: Channel
    if options.udp {
        channel = try DatagramBootstrap(group: group)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture { try channel.pipeline.syncOperations.addHandler(DatagramEchoHandler()) }
            }
            .bind(host: "127.0.0.1", port: options.port).wait()
    } else {
        let tls = try options.tlsSetup()
        channel = try ServerBootstrap(group: group)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .serverChannelOption(.backlog, value: 1024)
            .childChannelOption(.socketOption(.tcp_nodelay), value: 1)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try tls?.add(to: channel)
                    try channel.pipeline.syncOperations.addHandler(PerfServerHandler())
                }
            }
            .bind(host: "127.0.0.1", port: options.port).wait()
    }
    print("listening on 127.0.0.1:\(channel.localAddress?.port ?? options.port)")
    fflush(nil)
    try channel.closeFuture.wait()
}

func drive(_ options: Options, group: MultiThreadedEventLoopGroup) throws {
    let counter = PerfCounter()
    let server = try SocketAddress(ipAddress: "127.0.0.1", port: options.port)
    var channels: [Channel] = []
    // One TLS context for every connection, as a client's would be.
    let tls = options.udp ? nil : try options.tlsSetup()
    for _ in 0..<options.connections {
        if options.udp {
            let (size, depth) = (options.size, options.depth)
            channels.append(try DatagramBootstrap(group: group)
                .channelInitializer { channel in
                    channel.eventLoop.makeCompletedFuture {
                        try channel.pipeline.syncOperations.addHandler(DatagramPingPongClientHandler(server: server, size: size, depth: depth, counter: counter))
                    }
                }
                .bind(host: "127.0.0.1", port: 0).wait())
        } else if options.mode == "handshake" {
            connectRepeatedly(options, tls: tls, to: server, counter: counter, group: group)
        } else {
            let (mode, size, depth) = (options.mode, options.size, options.depth)
            channels.append(try ClientBootstrap(group: group)
                .channelOption(.socketOption(.tcp_nodelay), value: 1)
                .channelOption(.writeBufferWaterMark, value: .init(low: 512 * 1024, high: 1024 * 1024))
                .channelInitializer { channel in
                    channel.eventLoop.makeCompletedFuture {
                        try tls?.add(to: channel)
                        let handler: ChannelHandler = mode == "stream"
                            ? StreamClientHandler(size: size, counter: counter, usesTLS: tls != nil)
                            : PingPongClientHandler(size: size, depth: depth, counter: counter)
                        try channel.pipeline.syncOperations.addHandler(handler)
                    }
                }
                .connect(to: server).wait())
        }
    }
    let startOperations = counter.operations.load(ordering: .relaxed)
    let startBytes = counter.bytes.load(ordering: .relaxed)
    let start = monotonicSeconds()
    usleep(UInt32(options.duration * 1e6))
    let operations = counter.operations.load(ordering: .relaxed) - startOperations
    let bytes = counter.bytes.load(ordering: .relaxed) - startBytes
    let seconds = monotonicSeconds() - start
    counter.stopped.store(true, ordering: .relaxed)
    for channel in channels { try? channel.close().wait() }
    print("{\"ops_per_sec\":\(Double(operations) / seconds),\"bytes_per_sec\":\(Double(bytes) / seconds),\"operations\":\(operations),\"seconds\":\(seconds)}")
}

/// One handshake-mode connection slot: connects, and connects again each
/// time the connection closes, until the run stops.
func connectRepeatedly(_ options: Options, tls: TLSSetup?, to server: SocketAddress, counter: PerfCounter, group: MultiThreadedEventLoopGroup) {
    let size = options.size
    ClientBootstrap(group: group)
        .channelOption(.socketOption(.tcp_nodelay), value: 1)
        .channelInitializer { channel in
            channel.eventLoop.makeCompletedFuture {
                try tls?.add(to: channel)
                try channel.pipeline.syncOperations.addHandler(HandshakeClientHandler(size: size, counter: counter) {
                    connectRepeatedly(options, tls: tls, to: server, counter: counter, group: group)
                })
            }
        }
        .connect(to: server)
        .whenFailure { error in
            guard !counter.stopped.load(ordering: .relaxed) else { return }
            printError("nio-perf: connect: \(error)")
            exit(1)
        }
}

let options = Options(Array(CommandLine.arguments.dropFirst()))
let group = MultiThreadedEventLoopGroup(numberOfThreads: options.threads)
do {
    switch (options.role, options.async) {
    case ("server", false): try serve(options, group: group)
    case ("server", true): try await serveAsync(options, group: group)
    case (_, false): try drive(options, group: group)
    case (_, true): try await driveAsync(options, group: group)
    }
    try await group.shutdownGracefully()
} catch {
    printError("nio-perf: \(error)")
    exit(1)
}
