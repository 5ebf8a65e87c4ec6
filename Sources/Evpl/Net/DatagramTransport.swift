/// The backend under a ``DatagramEndpoint``: the datagram counterpart of
/// ``StreamTransport``, an enum over the concrete backends.
///
/// A backend receives each datagram whole into the endpoint's receive
/// queue and hands it over with ``DatagramEndpoint/deliverQueued(length:from:)``
/// (counting one larger than a buffer with
/// ``DatagramEndpoint/noteTruncated()``, never delivering a part); sends
/// what ``DatagramEndpoint/outgoing`` holds on a flush, dropping and
/// counting a datagram the kernel refuses
/// (``DatagramEndpoint/noteRejectedSend()``); waits for pool memory with
/// ``EventLoop/waitForMemory(_:buffers:)`` and receives again on
/// ``DatagramEndpoint/receiveAgain()``; and on close cancels what is in
/// flight, late completions only returning buffers.
enum DatagramTransport {
    /// A socket in the loop's epoll set, `recvmmsg` and `sendmmsg` (`Backends/Socket`).
    case socket(SocketDatagram)
    /// io_uring receives and sends (`Backends/IOURing`).
    case ioUring(URingDatagram)

    /// Datagrams handed to the kernel and not yet completed.
    var sendsInFlight: Int {
        switch self {
        case .socket: 0
        case .ioUring(let datagrams): datagrams.sendsInFlight
        }
    }
}
