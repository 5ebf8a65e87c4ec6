#!/usr/bin/env bash
# The io_uring backend beside the socket backend, sockperf and iperf3, in one
# run: alternating runs, medians and ratios.
#
#   Benchmarks/uring.sh [RUNS] [SECONDS]
#
# Needs: sockperf, iperf3 (apt-get install -y sockperf iperf3).
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${1:-5}
SECS=${2:-3}
swift build -c release --product evpl >/dev/null
source Benchmarks/lib.sh
PORT=17500

for run in $(seq "$RUNS"); do
    PORT=$((PORT + 20))
    for backend in socket io_uring; do
        PORT=$((PORT + 5))
        sample "${backend}_one" "$(evpl_pingpong $backend 0 0 1 $((PORT + 1)))"
        sample "${backend}_two" "$(evpl_pingpong $backend 0 1 1 $((PORT + 2)))"
        sample "${backend}_deep" "$(evpl_pingpong $backend 0 1 16 $((PORT + 3)))"
        sample "${backend}_stream" "$(evpl_stream $backend $((PORT + 4)))"
    done
    sample sockperf_one "$(sockperf_pingpong 0 0 $((PORT + 6)))"
    sample sockperf_two "$(sockperf_pingpong 0 1 $((PORT + 7)))"
    sample iperf3_stream "$(iperf3_stream $((PORT + 8)))"
    echo "run $run done" >&2
done

row() { # label key reference-label reference-key
    echo "| $1 | $(m "io_uring_$2") | $(m "socket_$2") | $(ratio "$(m "io_uring_$2")" "$(m "socket_$2")") | $3 |"
}
echo "| scenario | io_uring | socket | io_uring/socket | reference |"
echo "|---|---|---|---|---|"
row "TCP ping-pong 64 B depth 1, both on CPU 0 (round trips/s)" one "sockperf $(m sockperf_one)"
row "TCP ping-pong 64 B depth 1, CPU 0 and 1 (round trips/s)" two "sockperf $(m sockperf_two)"
row "TCP ping-pong 64 B depth 16, CPU 0 and 1 (round trips/s)" deep "-"
row "TCP stream 128 KiB (Gbit/s)" stream "iperf3 $(m iperf3_stream)"
echo
echo "medians of $RUNS runs of ${SECS}s, alternating; raw samples:"
raw io_uring_one socket_one io_uring_two socket_two io_uring_deep socket_deep io_uring_stream socket_stream sockperf_one sockperf_two iperf3_stream
