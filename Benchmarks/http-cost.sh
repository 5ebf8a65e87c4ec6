#!/usr/bin/env bash
# Heap allocations and instructions per request of the callback HTTP server
# and client (release, socket backend), counted by valgrind: memcheck's heap
# summary and callgrind's total (user space only). N keep-alive GETs, then
# 11 N; the difference over 10 N is the steady state, free of start-up and
# shutdown. The server (`evpl http serve`) answers a Python client
# pipelining 50 at a time; the client (`evpl http get --repeat`) asks an
# `evpl http serve` run outside valgrind.
#
#   Benchmarks/http-cost.sh [N] [EVPL_BINARY]   (default 1000 and the release build; needs valgrind)
set -euo pipefail
cd "$(dirname "$0")/.."
command -v valgrind >/dev/null || { echo "valgrind is missing: apt-get install -y valgrind" >&2; exit 1; }
N=${1:-1000}
binary=${2:-}
if [ -z "$binary" ]; then
    swift build -c release --product evpl >/dev/null
    binary=.build/release/evpl
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# valgrind cannot read the debug information Swift writes: a stripped copy.
cp "$binary" "$work/evpl" && strip -g "$work/evpl"

# count: from valgrind's log, the heap summary's allocations or callgrind's instructions.
count() {
    if [ "$tool" = memcheck ]; then
        sed -n 's/.*total heap usage: \([0-9,]*\) allocs.*/\1/p' "$work/valgrind.log" | tr -d ,
    else
        sed -n 's/.*Collected : \([0-9]*\).*/\1/p' "$work/valgrind.log"
    fi
}

# allocations REQUESTS: the heap summary's allocation count for a run answering REQUESTS.
allocations() {
    valgrind --tool="$tool" "${tool_options[@]}" --log-file="$work/valgrind.log" "$work/evpl" http serve --port 0 --backend socket >"$work/out" 2>&1 &
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
    count
}
# client_allocations REQUESTS: the same for `evpl http get --repeat REQUESTS`.
client_allocations() {
    valgrind --tool="$tool" "${tool_options[@]}" --log-file="$work/valgrind.log" "$work/evpl" http get "http://127.0.0.1:$server_port/allocations" --repeat "$1" --backend socket >/dev/null
    count
}

# report WHAT FEW MANY
report() {
    awk -v what="$1" -v few="$2" -v many="$3" -v n="$N" -v unit="$unit" \
        'BEGIN { printf "%s: %d %s for %d requests, %d for %d: %.4f per request\n", what, few, unit, n, many, 11 * n, (many - few) / (10 * n) }'
}

# choose TOOL: valgrind's tool for the next reports, with its options and unit.
choose() {
    tool=$1
    if [ "$tool" = memcheck ]; then
        unit=allocations tool_options=()
    else
        unit=instructions tool_options=(--callgrind-out-file=/dev/null)
    fi
}

# Spin passes depend on timing: the loops under valgrind sleep when idle.
export EVPL_SPIN_NS=0
for tool in memcheck callgrind; do
    choose $tool
    report "server (callbacks)" "$(allocations "$N")" "$(allocations $((11 * N)))"
done
"$work/evpl" http serve --port 0 --backend socket >"$work/server" 2>&1 &
server_pid=$!
trap 'kill "$server_pid" 2>/dev/null; rm -rf "$work"' EXIT
for _ in $(seq 100); do grep -q "listening on" "$work/server" && break; sleep 0.1; done
server_port=$(sed -n 's/.*listening on .*:\([0-9]*\)$/\1/p' "$work/server")
for tool in memcheck callgrind; do
    choose $tool
    report "client (callbacks)" "$(client_allocations "$N")" "$(client_allocations $((11 * N)))"
done
