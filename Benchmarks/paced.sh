#!/usr/bin/env bash
# Paced (open-loop) requests against `evpl perf server` under each wait
# policy: the server's CPU share and CPU per request beside the latency
# percentiles, counted from each request's scheduled time. The server runs
# on CPU 0, the client (which polls, to keep its schedule) on CPU 1.
#
#   Benchmarks/paced.sh [--runs N] [--seconds S] [--policies "adaptive fixed sleep"]
#                       [--backends "socket io_uring"] [--loads "1000:1:fixed ..."]
#                       [--client-backend socket]
#
# The backends are the server's; the client, the instrument, keeps one
# backend for every row (sockets unless told).
# A load is RATE:CONNECTIONS:ARRIVALS (fixed or poisson). Prints a markdown
# table of medians over the runs, policies side by side for each load.
set -euo pipefail
cd "$(dirname "$0")/.."

RUNS=3
SECS=3
POLICIES="adaptive fixed sleep"
BACKENDS="socket io_uring"
CLIENT_BACKEND=socket
LOADS="1000:1:fixed 1000:1:poisson 5000:1:fixed 5000:1:poisson 20000:1:poisson 100000:64:poisson"
while [ $# -gt 0 ]; do
    case "$1" in
        --runs) RUNS=$2; shift ;;
        --seconds) SECS=$2; shift ;;
        --policies) POLICIES=$2; shift ;;
        --backends) BACKENDS=$2; shift ;;
        --loads) LOADS=$2; shift ;;
        --client-backend) CLIENT_BACKEND=$2; shift ;;
        *) echo "usage: $0 [--runs N] [--seconds S] [--policies P] [--backends B] [--loads L] [--client-backend B]" >&2; exit 2 ;;
    esac
    shift
done
swift build -c release --product evpl >/dev/null
source Benchmarks/lib.sh

# paced POLICY BACKEND RATE CONNECTIONS ARRIVALS PORT -> "cpu% p50us p99us p999us ops/s"
paced() {
    local log; log=$(mktemp)
    EVPL_WAIT_POLICY=$1 taskset -c 0 "$EVPL" perf server --backend "$2" --port "$6" >"$log" & local pid=$!
    wait_listening "$log"
    local json
    json=$(taskset -c 1 "$EVPL" perf client --backend "$CLIENT_BACKEND" --port "$6" --server-pid "$pid" --rate "$3" --connections "$4" \
        --arrivals "$5" --duration "$SECS" --json)
    stop_server $pid; rm -f "$log"
    python3 -c '
import json, sys
r = json.loads(sys.argv[1]); l = r["latency_ns"]
print("%.1f %.1f %.1f %.1f %.0f" % (100 * r.get("server_cpu_share", float("nan")), l["p50"] / 1e3, l["p99"] / 1e3, l["p999"] / 1e3, r["ops_per_sec"]))
' "$json"
}

echo "| load | backend | policy | server CPU | CPU/request | p50 | p99 | p99.9 |"
echo "|---|---|---|---|---|---|---|---|"
port=23000
for load in $LOADS; do
    IFS=: read -r rate connections arrivals <<<"$load"
    for backend in $BACKENDS; do
        for policy in $POLICIES; do
            results=()
            for _ in $(seq "$RUNS"); do
                port=$((port + 1))
                results+=("$(paced "$policy" "$backend" "$rate" "$connections" "$arrivals" "$port")")
            done
            column() { printf '%s\n' "${results[@]}" | awk -v c="$1" '{ print $c }' | median; }
            cpu=$(column 1); rps=$(column 5)
            per=$(python3 -c "print('%.1f' % ($cpu / 100 * 1e6 / $rps))")
            echo "| ${rate}/s, $connections conn, $arrivals | $backend | $policy | ${cpu}% | ${per} us | $(column 2) us | $(column 3) us | $(column 4) us |"
        done
    done
done
