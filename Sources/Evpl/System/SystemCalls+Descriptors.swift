#if canImport(Glibc)
import Glibc
#endif

extension SystemCalls {
    /// `close(2)`, once: on Linux the descriptor is released whatever close
    /// reports (an `EINTR` or `EIO` from a socket's last flush leaves
    /// nothing to retry, and a retry could close a descriptor another
    /// thread just opened). `EBADF` means the library closed a descriptor
    /// twice or one it never owned, a bug that would close someone else's
    /// file the next time: it stops the process, as SwiftNIO does.
    static func close(_ fd: Int32) {
        #if EVPL_FAULT_INJECTION
        var unused = 0
        if FaultPlan.apply(.close, fd: fd, limiting: &unused) != nil {
            // The injected failure comes after the release, as the kernel's does.
            _ = Glibc.close(fd)
            return
        }
        #endif
        if Glibc.close(fd) != 0 && Glibc.errno == EBADF {
            stopWithMessage("close of a descriptor that is not open: closed twice, or never the library's")
        }
    }

    /// `shutdown(fd, SHUT_WR)`: the end of stream after the last byte
    /// queued. A peer already gone (`ENOTCONN`) leaves nothing to end.
    static func shutdownWrite(_ fd: Int32) {
        if Glibc.shutdown(fd, Int32(SHUT_WR)) != 0 && Glibc.errno == EBADF {
            stopWithMessage("shutdown of a descriptor that is not open")
        }
    }

    /// Adds `count` to an eventfd's counter, waking whoever waits on it. The
    /// library's eventfds are non-blocking, and a counter so full that the
    /// write would block (`EAGAIN`) already wakes its reader.
    static func signalEventFD(_ fd: Int32, _ count: UInt64 = 1) {
        var value = count
        if Glibc.write(fd, &value, 8) < 0 && Glibc.errno == EBADF {
            stopWithMessage("eventfd write to a descriptor that is not open")
        }
    }

    /// Takes an eventfd's counter: 0 when it was not signalled (`EAGAIN`).
    @discardableResult
    static func drainEventFD(_ fd: Int32) -> UInt64 {
        var value: UInt64 = 0
        if Glibc.read(fd, &value, 8) < 0 {
            if Glibc.errno == EBADF { stopWithMessage("eventfd read from a descriptor that is not open") }
            return 0
        }
        return value
    }
}
