#!/usr/bin/env bash
# Builds the examples and checks each against a real client: the echo
# server echoes, the key-value server keeps its data (concurrent SETs
# included) across a restart and across a record torn by a crash, the HTTP
# key-value servers answer curl's GET, PUT and DELETE and keep them across a
# restart, the file server sends a file byte for
# byte and refuses names outside its folder, the range server keeps what
# concurrent clients on two loops wrote to one file; none links OpenSSL. Exits 1 on the first failure.
#
#   Examples/check.sh
set -euo pipefail
cd "$(dirname "$0")"
swift build
bin=$(swift build --show-bin-path)

# The examples depend on Evpl (and EvplHTTP), which link no OpenSSL (TLS is EvplTLS).
for example in EchoServer KeyValueServer FileServer HTTPKeyValueServer; do
    if ldd "$bin/$example" | grep -E "libssl|libcrypto"; then
        echo "$example links OpenSSL, though it depends on Evpl alone" >&2
        exit 1
    fi
done
work=$(mktemp -d)
pids=()
trap 'for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done; rm -rf "$work"' EXIT

# start NAME ARGS...: runs an example and waits for its `listening on` line; sets `port`.
start() {
    local name=$1; shift
    "$bin/$name" "$@" >"$work/$name.out" 2>&1 &
    pids+=($!)
    for _ in $(seq 100); do
        if grep -q "listening on" "$work/$name.out"; then
            port=$(sed -n 's/.*listening on .*:\([0-9]*\)$/\1/p' "$work/$name.out" | head -1)
            return
        fi
        sleep 0.1
    done
    echo "$name did not start: $(cat "$work/$name.out")" >&2
    exit 1
}

# stop: SIGTERM to the last example started, and wait for it to exit.
stop() {
    local pid=${pids[-1]}
    kill -TERM "$pid"
    wait "$pid"
    unset 'pids[-1]'
}

# client PORT: runs the Python lines on stdin with `s`, a socket connected to PORT.
client() {
    python3 -c "
import socket, sys
s = socket.create_connection(('127.0.0.1', $1))
f = s.makefile('rb')
def ask(line):
    s.sendall(line.encode() + b'\n')
    return f.readline().decode().rstrip('\n')
def check(got, want):
    if got != want:
        sys.exit(f'got {got!r}, want {want!r}')
$(cat)
"
}

for server in EchoServer AsyncEchoServer; do
    echo "== $server"
    start $server 0 2
    client "$port" <<'PY'
s.sendall(b'hello, evpl')
check(s.recv(100), b'hello, evpl')
big = bytes(range(256)) * 4096
s.sendall(big)
got = b''
while len(got) < len(big):
    got += s.recv(1 << 20)
check(got == big, True)
PY
    stop
done

for server in KeyValueServer AsyncKeyValueServer; do
    echo "== $server: data survives a restart"
    data="$work/$server.log"
    start $server "$data"
    client "$port" <<'PY'
check(ask('SET color blue'), 'OK')
check(ask('SET motto never lose a byte'), 'OK')
check(ask('SET color green'), 'OK')
check(ask('GET color'), 'VALUE green')
check(ask('DROP everything'), 'ERROR expected SET key value or GET key')
PY
    # Eight clients SET at once (each answer comes only once its SET is
    # durable), then read each other's keys.
    client "$port" <<'PY'
import threading
answers = []
def writer(n):
    c = socket.create_connection(('127.0.0.1', s.getpeername()[1]))
    r = c.makefile('rb')
    for i in range(50):
        c.sendall(f'SET k{n}-{i} v{n * 1000 + i}\n'.encode())
        answers.append(r.readline())
threads = [threading.Thread(target=writer, args=(n,)) for n in range(8)]
for t in threads: t.start()
for t in threads: t.join()
check(answers, [b'OK\n'] * 400)
check(ask('GET k7-49'), 'VALUE v7049')
PY
    stop
    # A record torn by a crash mid-write (its header says 5 + 30 bytes, 20
    # made it), whose stale bytes past a shorter next record would read as
    # a record "g" = "h" if the server did not cut the tear off at start.
    printf '\0\0\0\5\0\0\0\036xxxxxx\0\0\0\1\0\0\0\1ghyyyy' >>"$data"
    start $server "$data"
    client "$port" <<'PY'
check(ask('GET color'), 'VALUE green')
check(ask('GET motto'), 'VALUE never lose a byte')
check(all(ask(f'GET k{n}-{i}') == f'VALUE v{n * 1000 + i}' for n in range(8) for i in range(50)), True)
check(ask('GET size'), 'NOTFOUND')
check(ask('SET size 42'), 'OK')
PY
    stop
    start $server "$data"
    client "$port" <<'PY'
check(ask('GET size'), 'VALUE 42')
check(ask('GET color'), 'VALUE green')
check(ask('GET g'), 'NOTFOUND')
PY
    stop
done

# status WANT CURL-ARGS...: curl's request gets the status WANT; the body is left in $work/body.
status() {
    local want=$1; shift
    local got; got=$(curl -sS -o "$work/body" -w '%{http_code}' "$@")
    if [ "$got" != "$want" ]; then
        echo "curl $*: status $got, want $want: $(head -c 200 "$work/body")" >&2
        exit 1
    fi
}

head -c 50000 /dev/urandom >"$work/binary"
head -c 70000 /dev/urandom >"$work/too-big"
for server in HTTPKeyValueServer AsyncHTTPKeyValueServer; do
    echo "== $server: GET, PUT and DELETE from curl survive a restart"
    data="$work/$server.log"
    start $server "$data"
    base="http://127.0.0.1:$port"
    status 204 -X PUT --data 'blue' "$base/color"
    status 200 "$base/color"
    [ "$(cat "$work/body")" = blue ] || { echo "GET /color: $(cat "$work/body")" >&2; exit 1; }
    status 204 -X PUT --data-binary @"$work/binary" "$base/blob"
    status 200 "$base/blob"
    cmp "$work/binary" "$work/body"
    status 413 -X PUT --data-binary @"$work/too-big" "$base/big"
    status 404 "$base/big"
    status 204 -X DELETE "$base/color"
    status 404 "$base/color"
    status 404 -X DELETE "$base/color"
    status 400 "$base/"
    status 405 -X POST --data x "$base/x"
    # 64 PUTs from 16 clients at once, each answered only once durable.
    answers=$(seq 64 | xargs -P 16 -I{} curl -sS -o /dev/null -w '%{http_code}\n' -X PUT --data 'v{}' "$base/k{}" | sort | uniq -c | tr -s ' ')
    [ "$answers" = " 64 204" ] || { echo "concurrent PUTs answered: $answers" >&2; exit 1; }
    # One keep-alive connection, three requests.
    [ "$(curl -sS "$base/k1" "$base/k2" "$base/k64")" = v1v2v64 ] || { echo "keep-alive GETs differ" >&2; exit 1; }
    stop
    start $server "$data"
    base="http://127.0.0.1:$port"
    status 404 "$base/color"
    status 200 "$base/blob"
    cmp "$work/binary" "$work/body"
    [ "$(curl -sS "$base/k33")" = v33 ] || { echo "k33 lost in the restart" >&2; exit 1; }
    stop
done

mkdir "$work/files"
head -c 3000000 /dev/urandom >"$work/files/blob"
for server in FileServer AsyncFileServer; do
    echo "== $server"
    start $server "$work/files"
    client "$port" <<PY
expected = open('$work/files/blob', 'rb').read()
check(ask('blob'), 'OK %d' % len(expected))
check(f.read(len(expected)) == expected, True)
check(ask('../KeyValueServer.log').startswith('ERROR'), True)
check(ask('missing').startswith('ERROR'), True)
check(ask('blob'), 'OK %d' % len(expected))
check(f.read(len(expected)) == expected, True)
PY
    stop
done
echo "== RangeServer: two loops, one file"
start RangeServer "$work/ranges.img" 4194304 0 2
client "$port" <<PY
import os, random, struct, threading
port = s.getpeername()[1]
def frame(payload):
    return struct.pack('>I', len(payload)) + payload
def reply(r):
    length = struct.unpack('>I', r.read(4))[0]
    return r.read(length)
# Eight clients at once, on both loops: each writes its own 256 KiB range in
# random pieces (each a write of received buffers), then flushes.
ranges = {n: os.urandom(256 << 10) for n in range(8)}
failures = []
def writer(n):
    c = socket.create_connection(('127.0.0.1', port))
    r = c.makefile('rb')
    data, at = ranges[n], 0
    while at < len(data):
        piece = data[at:at + random.randint(1, 60000)]
        c.sendall(frame(b'W' + struct.pack('>Q', (n << 18) + at) + piece))
        if reply(r) != b'O': failures.append((n, at))
        at += len(piece)
    c.sendall(frame(b'F'))
    if reply(r) != b'O': failures.append((n, 'flush'))
threads = [threading.Thread(target=writer, args=(n,)) for n in range(8)]
for t in threads: t.start()
for t in threads: t.join()
check(failures, [])
# Read back through new connections (any loop), and straight from the file.
for n in range(8):
    c = socket.create_connection(('127.0.0.1', port))
    r = c.makefile('rb')
    got = b''
    for at in range(0, 256 << 10, 65536):
        c.sendall(frame(b'R' + struct.pack('>QI', (n << 18) + at, 65536)))
        answer = reply(r)
        check(answer[:1], b'O')
        got += answer[1:]
    check(got == ranges[n], True)
disk = open('$work/ranges.img', 'rb').read()
check(all(disk[n << 18:(n + 1) << 18] == ranges[n] for n in range(8)), True)
s.sendall(frame(b'R' + struct.pack('>QI', 4194300, 100)))
check(reply(f), b'Epast the end')
s.sendall(frame(b'X'))
check(reply(f), b'Eunknown request')
PY
stop

echo "examples: all checks passed"
