@testable import Evpl
import EvplTLS
import FuzzSupport
#if canImport(Glibc)
import Glibc
#endif

// The TLS record path of an evpl server, fed bytes no TLS peer would send:
// whatever arrives, the connection ends with a typed error (or, for an
// empty injection after a good handshake, cleanly), within a bounded
// number of loop iterations, with no plaintext delivered and every buffer
// back in the pool.
//
// Input: [mode, bytes...]. Mode bit 0 clear: a raw TCP client sends the
// bytes in place of a handshake, then its end of stream. Set: an evpl
// client completes a real handshake, then writes the bytes straight into
// its socket's send queue (bypassing encryption) followed by its
// close_notify, as an attacker on the path could.

let loop = smallBufferLoop()
let identity = try! TLSConfiguration.selfSignedIdentity(for: ["localhost"])
let serverContext = try! TLSContext(.server(certificateChain: identity.certificateChain, privateKey: identity.privateKey), role: .server)
let clientContext = try! TLSContext(.client(serverName: "localhost", trustRoots: .certificates(identity.certificateChain)), role: .client)
let listener = try! Listener(address: SocketAddress(host: "127.0.0.1", port: 0), protocol: EvplProtocol(.tcp, backend: .socket, tls: serverContext))

/// What the server side saw of the current input's connection.
final class ServerSide {
    var connected = false
    var plaintext = 0
    var ended: EvplError??
}
nonisolated(unsafe) var server = ServerSide()

loop.attach(to: listener) { connection in
    let side = server
    connection.handler = { _, event in
        switch event {
        case .connected: side.connected = true
        case .received(let bytes): side.plaintext += bytes.count
        case .disconnected(let error): side.ended = .some(error)
        default: break
        }
    }
}

/// Turns the loop until `done`, at most 20,000 times (a hang is a failure).
@MainActor func turn(until done: () -> Bool, _ what: String) {
    var turns = 0
    while !done() {
        turns += 1
        precondition(turns < 20_000, "no end after 20,000 loop iterations: \(what)")
        loop.pin()
        loop.runOnce()
        loop.unpin()
    }
}

turn(until: { listener.attachedLoopCount == 1 }, "the listener to attach")
let acceptedCodes: Set<EvplError.Code> = [.tls, .tlsHandshake, .tlsTruncated, .tlsCertificate, .connectionReset]

runFuzzer { bytes in
    guard let mode = bytes.first else { return }
    let injected = Array(bytes.dropFirst())
    server = ServerSide()
    let side = server
    if mode & 1 == 0 {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        precondition(fd >= 0)
        defer { close(fd) }
        // libFuzzer's timer signal can interrupt the blocking calls.
        while listener.address.withSockAddr({ connect(fd, $0, $1) }) != 0 {
            if errno == EISCONN { break }
            precondition(errno == EINTR || errno == EALREADY, "connect: \(errno)")
        }
        var written = 0
        while written < injected.count {
            // The server may refuse early and reset: stop writing then.
            let count = injected[written...].withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            if count < 0 && errno == EINTR { continue }
            if count <= 0 { break }
            written += count
            loop.pin()
            loop.runOnce()
            loop.unpin()
        }
        shutdown(fd, Int32(SHUT_WR))
        turn(until: { side.ended != nil }, "a handshake of garbage")
        let error = side.ended!
        precondition(error != nil, "a connection without a handshake ended cleanly")
        precondition(acceptedCodes.contains(error!.code), "untyped end: \(error!)")
    } else {
        var clientConnected = false
        var clientEnded = false
        let client = try! loop.connect(to: listener.address, protocol: EvplProtocol(.tcp, backend: .socket, tls: clientContext)) { _, event in
            switch event {
            case .connected: clientConnected = true
            case .disconnected: clientEnded = true
            default: break
            }
        }
        turn(until: { (clientConnected && side.connected) || clientEnded || side.ended != nil }, "the handshake")
        precondition(clientConnected && side.connected, "a good handshake failed: \(String(describing: side.ended))")
        if !injected.isEmpty {
            try! injected.withUnsafeBytes { try client.sendQueue.append(copying: $0, pool: loop.bufferPool, trackMessage: false) }
        }
        client.finish()
        turn(until: { side.ended != nil && clientEnded }, "injected records")
        let error = side.ended!
        if injected.isEmpty {
            precondition(error == nil, "a clean close_notify ended with \(error!)")
        } else {
            precondition(error != nil, "forged records ended cleanly")
            precondition(acceptedCodes.contains(error!.code), "untyped end: \(error!)")
        }
    }
    precondition(side.plaintext == 0, "\(side.plaintext) bytes of plaintext delivered from forged input")
    // The disconnects are delivered at the end of an iteration.
    loop.pin()
    loop.runOnce()
    loop.unpin()
    precondition(loop.bufferPool.buffersInUse == 0, "\(loop.bufferPool.buffersInUse) buffers still in use")
}
