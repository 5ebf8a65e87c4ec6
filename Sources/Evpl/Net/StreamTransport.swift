/// The backend under a stream ``Connection``: the one seam through which a
/// connection asks its backend to move bytes.
///
/// A connection holds what is the same on every backend: its state, its
/// send and receive queues in pool buffers, its wire (plain or TLS) and its
/// consumer (callbacks or an async pull). Its transport says how those
/// queues meet the kernel, or another loop. Each backend lives in a folder
/// of its own (`Backends/Socket`, `Backends/IOURing`, `Backends/InProcess`)
/// and implements the operations
/// below; this file is the only place that chooses between them, with one
/// `switch` per operation, so that a new backend is a new case, a new
/// folder, and an arm in each of these functions.
///
/// What a backend must do (the contract every case keeps):
/// - **Receive** into the connection's ``Connection/wireReceiveQueue``
///   (pool buffers it writes into, or owned buffers it appends), then call
///   ``Connection/wireReceived()``; call ``Connection/peerFinished()`` at the
///   end of stream and ``Connection/tearDown(error:)`` with the errno on a
///   failure. It stops receiving when asked (``stopReceiving()``) and starts
///   again on ``startReceiving()``: paused data waits in the kernel.
/// - **Send** what ``Connection/sendQueue`` holds, gathered, on
///   ``flush()``, and report what was written (``Connection/wrote(_:)``, or
///   the queue's own accounting on a synchronous write); say while a send is
///   in flight (``sendInFlight``), since the end of stream waits for it.
/// - **Close**: on ``close()``, cancel what is in flight and forget the
///   socket's readiness; completions that arrive later only give their
///   buffers back, and nothing reaches the application after
///   `disconnected`.
/// - **Run on the loop's thread**, without an allocation or a system call
///   per operation beyond the one that moves the bytes.
///
/// Dispatch is an enum over the concrete backends, not a protocol
/// existential: the `switch` costs what the former `if let uring` did.
enum StreamTransport {
    /// Kernel sockets driven by epoll readiness (`Backends/Socket`).
    case socket
    /// io_uring operations (`Backends/IOURing`).
    case ioUring(URingStream)
    /// Another loop of this process, by reference (`Backends/InProcess`).
    case inProcess(InProcessStream)
}

extension Connection {
    /// Starts receiving, or starts again after a pause.
    @inline(__always)
    func startReceiving() {
        switch transport {
        case .socket: readAvailable()
        case .ioUring(let stream): stream.armReceive()
        case .inProcess(let stream): stream.receive()
        }
    }

    /// An accepted connection whose handler is installed starts receiving.
    func startAccepted() {
        switch transport {
        case .socket: break  // Registering the socket reported what waits there as an edge.
        case .ioUring(let stream): stream.armReceive()
        case .inProcess(let stream): stream.receive()
        }
    }

    /// Stops taking data from the kernel until ``startReceiving()``.
    @inline(__always)
    func stopReceiving() {
        switch transport {
        case .socket: break  // Readiness is edge-triggered: a paused connection just does not read.
        case .ioUring(let stream): stream.stopReceiving()
        case .inProcess: break  // A paused stream leaves what arrives in the channel.
        }
    }

    /// Writes what the send queue holds.
    @inline(__always)
    func transmit() {
        switch transport {
        case .socket: writeQueued()
        case .ioUring(let stream): stream.flush()
        case .inProcess(let stream): stream.transmit()
        }
    }

    /// Whether a send is still with the kernel (the end of stream waits for it).
    var sendInFlight: Bool {
        switch transport {
        case .socket, .inProcess: false
        case .ioUring(let stream): stream.sendInFlight
        }
    }

    /// Sends the end of stream (the write side's shutdown) once everything
    /// queued went out.
    func sendEndOfStream() {
        switch transport {
        case .socket, .ioUring: SystemCalls.shutdownWrite(fd)
        case .inProcess(let stream): stream.sendEndOfStream()
        }
    }

    /// Cancels what is in flight, forgets the socket's readiness and closes
    /// it; the connection is being torn down.
    func closeTransport() {
        switch transport {
        case .socket:
            loop.unregister(token: token)
            SystemCalls.close(fd)
        case .ioUring(let stream):
            stream.cancel()
            SystemCalls.close(fd)
        case .inProcess(let stream):
            stream.close(abortive: finalError?.code == .aborted)
        }
    }

    /// Closes without touching the loop, which is being destroyed.
    func abandonTransport() {
        switch transport {
        case .socket, .ioUring: SystemCalls.close(fd)
        case .inProcess(let stream): stream.close(abortive: true)
        }
    }

    /// The address the transport reports as this end's own.
    var transportLocalAddress: SocketAddress? {
        switch transport {
        case .socket, .ioUring: SocketOps.localAddress(of: fd)
        case .inProcess(let stream): stream.localAddress
        }
    }

    /// Readiness from the loop's epoll set (socket backend), or a read
    /// pass the loop scheduled: after a resume, or after a read burst that
    /// stopped before the socket was drained.
    func handleEvents(_ events: UInt32) {
        switch transport {
        case .socket:
            handleReadiness(events)
        case .ioUring(let stream):
            // Only a read pass after a resume reaches an io_uring connection here.
            readPending = false
            resumeDelivery()
            stream.armReceive()
        case .inProcess(let stream):
            // A read pass: the connect completing, or a resume.
            readPending = false
            if state == .connecting {
                connectCompleted(errno: 0)
                return
            }
            resumeDelivery()
            stream.receive()
        }
    }
}
