#!/usr/bin/env bash
# Side-by-side comparison of `evpl perf` (default config, socket backend)
# with sockperf and iperf3, alternating A/B runs, reporting medians and ratios.
#
#   Benchmarks/foundation.sh [RUNS] [SECONDS]
#
# Needs: sockperf, iperf3 (apt-get install -y sockperf iperf3).
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${1:-5}
SECS=${2:-3}
swift build -c release --product evpl >/dev/null
source Benchmarks/lib.sh
PORT=17000

for run in $(seq "$RUNS"); do
    PORT=$((PORT + 10))
    sample evpl_one "$(evpl_pingpong auto 0 0 1 $((PORT + 1)))"
    sample sockperf_one "$(sockperf_pingpong 0 0 $((PORT + 2)))"
    sample evpl_two "$(evpl_pingpong auto 0 1 1 $((PORT + 3)))"
    sample sockperf_two "$(sockperf_pingpong 0 1 $((PORT + 4)))"
    sample evpl_stream "$(evpl_stream auto $((PORT + 5)))"
    sample iperf3_stream "$(iperf3_stream $((PORT + 6)))"
    echo "run $run done" >&2
done

echo "| scenario | swift-evpl | reference | ratio |"
echo "|---|---|---|---|"
echo "| TCP ping-pong 64 B, both on CPU 0 (round trips/s) | $(m evpl_one) | sockperf $(m sockperf_one) | $(ratio "$(m evpl_one)" "$(m sockperf_one)") |"
echo "| TCP ping-pong 64 B, CPU 0 and 1 (round trips/s) | $(m evpl_two) | sockperf $(m sockperf_two) | $(ratio "$(m evpl_two)" "$(m sockperf_two)") |"
echo "| TCP stream 128 KiB (Gbit/s) | $(m evpl_stream) | iperf3 $(m iperf3_stream) | $(ratio "$(m evpl_stream)" "$(m iperf3_stream)") |"
echo
echo "medians of $RUNS runs of ${SECS}s, alternating; raw samples:"
raw evpl_one sockperf_one evpl_two sockperf_two evpl_stream iperf3_stream
