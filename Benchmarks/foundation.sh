#!/usr/bin/env bash
# Side-by-side comparison of `evpl perf` (default config) with sockperf and
# iperf3, alternating A/B runs and reporting medians and ratios.
#
#   Benchmarks/foundation.sh [RUNS] [SECONDS]
#
# Needs: sockperf, iperf3 (apt-get install -y sockperf iperf3).
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${1:-5}
SECS=${2:-3}
swift build -c release --product evpl >/dev/null
EVPL=.build/release/evpl
PORT=17000

median() { sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }

wait_listening() { for _ in $(seq 50); do grep -q "listening on" "$1" 2>/dev/null && return; sleep 0.1; done; }

# Each measurement takes its port as its last argument: the functions run in
# command substitutions (subshells), so they cannot advance a shared counter.
evpl_pingpong() { # server-cpu client-cpu port -> round trips/s
    local log; log=$(mktemp); local PORT=$3
    taskset -c "$1" "$EVPL" perf server --port $PORT >"$log" & local pid=$!
    wait_listening "$log"
    taskset -c "$2" "$EVPL" perf client --port $PORT --size 64 --depth 1 --duration "$SECS" --json |
        sed -E 's/.*"ops_per_sec":([0-9.]+).*/\1/'
    kill $pid; wait $pid 2>/dev/null || true; rm -f "$log"
}

sockperf_pingpong() { # server-cpu client-cpu port -> round trips/s (sockperf prints one-way latency)
    local PORT=$3
    taskset -c "$1" sockperf server --tcp -i 127.0.0.1 -p $PORT >/dev/null 2>&1 & local pid=$!
    sleep 0.5
    taskset -c "$2" sockperf ping-pong --tcp -i 127.0.0.1 -p $PORT -m 64 -t "$SECS" 2>&1 |
        sed -nE 's/.*Summary: Latency is ([0-9.]+) usec.*/\1/p' | awk '{printf "%.1f\n", 1e6 / (2 * $1)}'
    kill $pid; wait $pid 2>/dev/null || true
}

evpl_stream() { # port -> Gbit/s
    local log; log=$(mktemp); local PORT=$1
    "$EVPL" perf server --port $PORT >"$log" & local pid=$!
    wait_listening "$log"
    "$EVPL" perf client --port $PORT --mode stream --size 131072 --duration "$SECS" --json |
        sed -E 's/.*"bytes_per_sec":([0-9.]+).*/\1/' | awk '{printf "%.2f\n", $1 * 8 / 1e9}'
    kill $pid; wait $pid 2>/dev/null || true; rm -f "$log"
}

iperf3_stream() { # port -> Gbit/s
    local PORT=$1
    iperf3 -s -p $PORT -1 >/dev/null 2>&1 & local pid=$!
    sleep 0.5
    iperf3 -c 127.0.0.1 -p $PORT -t "$SECS" -J | python3 -c 'import json,sys; print("%.2f" % (json.load(sys.stdin)["end"]["sum_received"]["bits_per_second"] / 1e9))'
    wait $pid 2>/dev/null || true
}

declare -A samples
for run in $(seq "$RUNS"); do
    PORT=$((PORT + 10))
    samples[evpl_one]+="$(evpl_pingpong 0 0 $((PORT + 1))) "
    samples[sockperf_one]+="$(sockperf_pingpong 0 0 $((PORT + 2))) "
    samples[evpl_two]+="$(evpl_pingpong 0 1 $((PORT + 3))) "
    samples[sockperf_two]+="$(sockperf_pingpong 0 1 $((PORT + 4))) "
    samples[evpl_stream]+="$(evpl_stream $((PORT + 5))) "
    samples[iperf3_stream]+="$(iperf3_stream $((PORT + 6))) "
    echo "run $run done" >&2
done

m() { echo "${samples[$1]}" | tr ' ' '\n' | grep -v '^$' | median; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2fx", a / b}'; }

echo "| scenario | swift-evpl | reference | ratio |"
echo "|---|---|---|---|"
echo "| TCP ping-pong 64 B, both on CPU 0 (round trips/s) | $(m evpl_one) | sockperf $(m sockperf_one) | $(ratio "$(m evpl_one)" "$(m sockperf_one)") |"
echo "| TCP ping-pong 64 B, CPU 0 and 1 (round trips/s) | $(m evpl_two) | sockperf $(m sockperf_two) | $(ratio "$(m evpl_two)" "$(m sockperf_two)") |"
echo "| TCP stream 128 KiB (Gbit/s) | $(m evpl_stream) | iperf3 $(m iperf3_stream) | $(ratio "$(m evpl_stream)" "$(m iperf3_stream)") |"
echo
echo "medians of $RUNS runs of ${SECS}s, alternating; raw samples:"
for key in evpl_one sockperf_one evpl_two sockperf_two evpl_stream iperf3_stream; do echo "  $key: ${samples[$key]}"; done
