# Shared helpers for the side-by-side benchmark scripts (source it).
# Each measurement takes its port as an argument: the functions run in
# command substitutions (subshells), so they cannot advance a shared counter.

EVPL=${EVPL:-.build/release/evpl}

median() { sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2fx", a / b}'; }

wait_listening() { for _ in $(seq 50); do grep -q "listening on" "$1" 2>/dev/null && return; sleep 0.1; done; }

# evpl_pingpong BACKEND SERVER_CPU CLIENT_CPU DEPTH PORT -> round trips/s
evpl_pingpong() {
    local log; log=$(mktemp); local port=$5
    taskset -c "$2" "$EVPL" perf server --backend "$1" --port "$port" >"$log" & local pid=$!
    wait_listening "$log"
    taskset -c "$3" "$EVPL" perf client --backend "$1" --port "$port" --size 64 --depth "$4" --duration "$SECS" --json |
        sed -E 's/.*"ops_per_sec":([0-9.]+).*/\1/'
    kill $pid; wait $pid 2>/dev/null || true; rm -f "$log"
}

# evpl_stream BACKEND PORT -> Gbit/s (128 KiB messages, unpinned)
evpl_stream() {
    local log; log=$(mktemp); local port=$2
    "$EVPL" perf server --backend "$1" --port "$port" >"$log" & local pid=$!
    wait_listening "$log"
    "$EVPL" perf client --backend "$1" --port "$port" --mode stream --size 131072 --duration "$SECS" --json |
        sed -E 's/.*"bytes_per_sec":([0-9.]+).*/\1/' | awk '{printf "%.2f\n", $1 * 8 / 1e9}'
    kill $pid; wait $pid 2>/dev/null || true; rm -f "$log"
}

# sockperf_pingpong SERVER_CPU CLIENT_CPU PORT -> round trips/s (sockperf prints one-way latency)
sockperf_pingpong() {
    local port=$3
    taskset -c "$1" sockperf server --tcp -i 127.0.0.1 -p "$port" >/dev/null 2>&1 & local pid=$!
    sleep 0.5
    taskset -c "$2" sockperf ping-pong --tcp -i 127.0.0.1 -p "$port" -m 64 -t "$SECS" 2>&1 |
        sed -nE 's/.*Summary: Latency is ([0-9.]+) usec.*/\1/p' | awk '{printf "%.1f\n", 1e6 / (2 * $1)}'
    kill $pid; wait $pid 2>/dev/null || true
}

# iperf3_stream PORT -> Gbit/s
iperf3_stream() {
    local port=$1
    iperf3 -s -p "$port" -1 >/dev/null 2>&1 & local pid=$!
    sleep 0.5
    iperf3 -c 127.0.0.1 -p "$port" -t "$SECS" -J | python3 -c 'import json,sys; print("%.2f" % (json.load(sys.stdin)["end"]["sum_received"]["bits_per_second"] / 1e9))'
    wait $pid 2>/dev/null || true
}

declare -A samples
# sample KEY VALUE: records one measurement.
sample() { samples[$1]+="$2 "; }
# m KEY: the median of KEY's samples.
m() { echo "${samples[$1]}" | tr ' ' '\n' | grep -v '^$' | median; }
# raw KEY...: prints every key's samples.
raw() { for key in "$@"; do echo "  $key: ${samples[$key]}"; done; }
