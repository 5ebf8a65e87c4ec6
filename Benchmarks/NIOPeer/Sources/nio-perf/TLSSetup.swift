import NIOCore
import NIOSSL

/// The NIO-SSL side of `--tls`: TLS 1.3 with the certificate and key a
/// server is given, and the CA (and name) a client verifies against, as
/// `evpl perf --tls` is configured, so the two run the same handshake.
struct TLSSetup: Sendable {
    let context: NIOSSLContext
    let serverName: String?

    /// A server identity from PEM files.
    static func server(certificate: String, key: String) throws -> TLSSetup {
        var configuration = TLSConfiguration.makeServerConfiguration(
            certificateChain: try NIOSSLCertificate.fromPEMFile(certificate).map { .certificate($0) },
            privateKey: .privateKey(try NIOSSLPrivateKey(file: key, format: .pem))
        )
        configuration.minimumTLSVersion = .tlsv13
        return TLSSetup(context: try NIOSSLContext(configuration: configuration), serverName: nil)
    }

    /// A client that trusts `authority` and checks the server is `name`.
    static func client(authority: String, name: String) throws -> TLSSetup {
        var configuration = TLSConfiguration.makeClientConfiguration()
        configuration.minimumTLSVersion = .tlsv13
        configuration.trustRoots = .file(authority)
        return TLSSetup(context: try NIOSSLContext(configuration: configuration), serverName: name)
    }

    /// Puts the TLS handler first in `channel`'s pipeline.
    func add(to channel: Channel) throws {
        let handler: ChannelHandler = if let serverName {
            try NIOSSLClientHandler(context: context, serverHostname: serverName)
        } else {
            NIOSSLServerHandler(context: context)
        }
        try channel.pipeline.syncOperations.addHandler(handler)
    }
}

/// Client side of the handshake rate: each connection opens (TCP and, with
/// `--tls`, a full TLS handshake), makes one round trip of `size` bytes and
/// closes (close_notify both ways under TLS); then the next one opens.
final class HandshakeClientHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private let size: Int
    private let counter: PerfCounter
    private let reconnect: () -> Void
    private var pendingBytes = 0

    init(size: Int, counter: PerfCounter, reconnect: @escaping () -> Void) {
        self.size = size
        self.counter = counter
        self.reconnect = reconnect
    }

    func channelActive(context: ChannelHandlerContext) {
        context.writeHandshake(PerfHandshake.ping)
        context.writeAndFlush(wrapOutboundOut(context.channel.allocator.buffer(repeating: 0x5A, count: size)), promise: nil)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        pendingBytes += unwrapInboundIn(data).readableBytes
        guard pendingBytes >= size else { return }
        pendingBytes = 0
        counter.add(operations: 1, bytes: size)
        context.close(promise: nil)
    }

    func channelInactive(context: ChannelHandlerContext) {
        if !counter.stopped.load(ordering: .relaxed) { reconnect() }
    }
}
