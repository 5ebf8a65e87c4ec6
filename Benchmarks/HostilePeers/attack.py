"""Hostile clients for Benchmarks/hostile-peers.sh, and the measurements
taken around them. Each command prints one line of results.

  half-hello PORT COUNT HOLD CA     COUNT connections each send the first half of
                                    a ClientHello, hold HOLD s, close; then the
                                    seconds until a new TLS client is served
  idle PORT COUNT PID TIMEOUT       COUNT connections that send nothing; how many
                                    the server closed by TIMEOUT + 2 s, and RSS
                                    of PID before, with them open, and after
  nonreading PORT COUNT SECONDS PID COUNT clients that write without reading for
                                    SECONDS; the peak RSS of PID
"""
import os, resource, select, socket, ssl, sys, time


def rss(pid):
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def client_hello(ca):
    context = ssl.create_default_context(cafile=ca)
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = context.wrap_bio(incoming, outgoing, server_hostname="localhost")
    try:
        tls.do_handshake()
    except ssl.SSLWantReadError:
        pass
    return outgoing.read()


def served(port, ca, timeout=10):
    """Seconds until a TLS client is served an echo, or None."""
    start = time.monotonic()
    context = ssl.create_default_context(cafile=ca)
    while time.monotonic() - start < timeout:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=timeout) as raw:
                with context.wrap_socket(raw, server_hostname="localhost") as tls:
                    tls.sendall(b"ping")
                    if tls.recv(4) == b"ping":
                        return time.monotonic() - start
        except OSError:
            time.sleep(0.01)
    return None


def raise_file_limit():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def half_hello(port, count, hold, ca):
    raise_file_limit()
    half = client_hello(ca)
    half = half[: len(half) // 2]
    clients = []
    for _ in range(count):
        s = socket.create_connection(("127.0.0.1", port))
        s.sendall(half)
        clients.append(s)
    time.sleep(hold)
    for s in clients:
        s.close()
    seconds = served(port, ca)
    print(f"served_after_s={seconds:.3f}" if seconds is not None else "served_after_s=never")


def idle(port, count, pid, timeout):
    """Each connection's life is timed from its own connect to the
    server's close, so the seconds spent opening thousands do not count."""
    raise_file_limit()
    before = rss(pid)
    poller = select.epoll()
    clients, started, lives = [], {}, []

    def reap(wait):
        for fd, _ in poller.poll(wait):
            poller.unregister(fd)
            lives.append(time.monotonic() - started[fd])

    for index in range(count):
        # In batches the accepting thread keeps up with, watching for
        # closes meanwhile: a connection's life is timed from its connect.
        if index % 200 == 199:
            reap(0.1)
        s = socket.socket()
        s.setblocking(False)
        try:
            s.connect(("127.0.0.1", port))
        except BlockingIOError:
            pass
        started[s.fileno()] = time.monotonic()
        poller.register(s.fileno(), select.EPOLLIN | select.EPOLLRDHUP)
        clients.append(s)
    loaded = rss(pid)
    deadline = time.monotonic() + timeout + 3
    while len(lives) < count and time.monotonic() < deadline:
        reap(0.1)
    time.sleep(2)
    after = rss(pid)
    lives.sort()
    early = sum(1 for life in lives if life < timeout - 0.2)
    late = sum(1 for life in lives if life > timeout + 1)
    shortest, longest = (lives[0], lives[-1]) if lives else (0, 0)
    print(f"connections={count} closed={len(lives)} before_timeout={early} over_1s_late={late} "
          f"life_s={shortest:.2f}..{longest:.2f} "
          f"rss_before_mb={before / 2**20:.1f} rss_open_mb={loaded / 2**20:.1f} rss_after_mb={after / 2**20:.1f}")


def nonreading(port, count, seconds, pid):
    raise_file_limit()
    start = rss(pid)
    clients = []
    for _ in range(count):
        s = socket.create_connection(("127.0.0.1", port))
        s.setblocking(False)
        clients.append(s)
    chunk = b"x" * 65536
    peak, written, end = 0, 0, time.monotonic() + seconds
    while time.monotonic() < end:
        for s in clients:
            try:
                written += s.send(chunk)
            except (BlockingIOError, OSError):
                pass
        peak = max(peak, rss(pid))
    print(f"clients={count} written_mb={written / 2**20:.0f} start_rss_mb={start / 2**20:.1f} "
          f"peak_rss_mb={peak / 2**20:.1f} growth_mb={(peak - start) / 2**20:.1f}")
    for s in clients:
        s.close()


if __name__ == "__main__":
    command, args = sys.argv[1], sys.argv[2:]
    if command == "half-hello":
        half_hello(int(args[0]), int(args[1]), float(args[2]), args[3])
    elif command == "idle":
        idle(int(args[0]), int(args[1]), int(args[2]), float(args[3]))
    elif command == "nonreading":
        nonreading(int(args[0]), int(args[1]), float(args[2]), int(args[3]))
    else:
        sys.exit(__doc__)
