#!/usr/bin/env bash
# Heap allocations per request of the callback HTTP server and client
# (release, socket backend), counted by valgrind's heap summary: N keep-alive
# GETs, then 11 N; the difference over 10 N is the steady state, free of
# start-up and shutdown. The server (`evpl http serve`) answers a Python
# client pipelining 50 at a time; the client (`evpl http get --repeat`)
# asks an `evpl http serve` run outside valgrind.
#
#   Benchmarks/http-allocations.sh [N]   (default 1000; needs valgrind)
set -euo pipefail
cd "$(dirname "$0")/.."
command -v valgrind >/dev/null || { echo "valgrind is missing: apt-get install -y valgrind" >&2; exit 1; }
N=${1:-1000}
swift build -c release --product evpl >/dev/null
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# valgrind cannot read the debug information Swift writes: a stripped copy.
cp .build/release/evpl "$work/evpl" && strip -g "$work/evpl"

# allocations REQUESTS: the heap summary's allocation count for a run answering REQUESTS.
allocations() {
    valgrind --log-file="$work/valgrind.log" "$work/evpl" http serve --port 0 --backend socket >"$work/out" 2>&1 &
    local pid=$!
    for _ in $(seq 200); do grep -q "listening on" "$work/out" && break; sleep 0.1; done
    local port; port=$(sed -n 's/.*listening on .*:\([0-9]*\)$/\1/p' "$work/out")
    python3 - "$port" "$1" <<'PY'
import socket, sys
port, n = int(sys.argv[1]), int(sys.argv[2])
s = socket.create_connection(('127.0.0.1', port))
request = b'GET /allocations HTTP/1.1\r\nHost: example.org\r\nUser-Agent: evpl-test\r\nAccept: */*\r\n\r\n'
for start in range(0, n, 50):
    count = min(50, n - start)
    s.sendall(request * count)
    answers = b''
    while answers.count(b'hello world') < count:
        answers += s.recv(65536)
PY
    kill -TERM "$pid"
    wait "$pid"
    sed -n 's/.*total heap usage: \([0-9,]*\) allocs.*/\1/p' "$work/valgrind.log" | tr -d ,
}
# client_allocations REQUESTS: the same for `evpl http get --repeat REQUESTS`.
client_allocations() {
    valgrind --log-file="$work/valgrind.log" "$work/evpl" http get "http://127.0.0.1:$server_port/allocations" --repeat "$1" --backend socket >/dev/null
    sed -n 's/.*total heap usage: \([0-9,]*\) allocs.*/\1/p' "$work/valgrind.log" | tr -d ,
}

# report WHAT FEW MANY
report() {
    awk -v what="$1" -v few="$2" -v many="$3" -v n="$N" \
        'BEGIN { printf "%s: %d allocations for %d requests, %d for %d: %.4f per request\n", what, few, n, many, 11 * n, (many - few) / (10 * n) }'
}

report "server (callbacks)" "$(allocations "$N")" "$(allocations $((11 * N)))"
"$work/evpl" http serve --port 0 --backend socket >"$work/server" 2>&1 &
server_pid=$!
trap 'kill "$server_pid" 2>/dev/null; rm -rf "$work"' EXIT
for _ in $(seq 100); do grep -q "listening on" "$work/server" && break; sleep 0.1; done
server_port=$(sed -n 's/.*listening on .*:\([0-9]*\)$/\1/p' "$work/server")
report "client (callbacks)" "$(client_allocations "$N")" "$(client_allocations $((11 * N)))"
