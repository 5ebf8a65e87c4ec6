#!/usr/bin/env bash
# Multi-thread scaling: `evpl perf` with N server loops, N client loops and
# N connections (64 B ping-pong, depth 16 per connection, unpinned), for each
# N given; alternating runs, medians, and the speedup over the first N.
#
#   Benchmarks/scaling.sh [--runs R] [--seconds S] N...      e.g. 1 2 4 8 16
#
# Needs nothing but an evpl binary (EVPL=path, default .build/release/evpl),
# so it runs on a machine without Swift given one built with the Swift
# runtime linked in; liburing and libaio stay shared libraries, so bring them:
#   swift build -c release --static-swift-stdlib --product evpl
#   mkdir -p Benchmarks/device
#   cp .build/release/evpl /lib/x86_64-linux-gnu/liburing.so.2 /lib/x86_64-linux-gnu/libaio.so.1 Benchmarks/device/
#   # then, on the other machine, from the repository root:
#   LD_LIBRARY_PATH=Benchmarks/device EVPL=Benchmarks/device/evpl Benchmarks/scaling.sh 1 2 4 8 16
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=5
SECS=3
COUNTS=()
while [ $# -gt 0 ]; do
    case "$1" in
        --runs) RUNS=$2; shift ;;
        --seconds) SECS=$2; shift ;;
        [0-9]*) COUNTS+=("$1") ;;
        *) echo "usage: $0 [--runs R] [--seconds S] N..." >&2; exit 2 ;;
    esac
    shift
done
[ ${#COUNTS[@]} -eq 0 ] && COUNTS=(1 2)
source Benchmarks/lib.sh
[ -x "$EVPL" ] || { echo "no evpl binary at $EVPL (set EVPL)" >&2; exit 1; }

declare -A samples
PORT=22000
for run in $(seq "$RUNS"); do
    for count in "${COUNTS[@]}"; do
        PORT=$((PORT + 1))
        samples[$count]+="$(evpl_scaling "$count" "$PORT") "
    done
    echo "run $run of $RUNS done" >&2
done

median() { tr ' ' '\n' | grep -v '^$' | sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
echo "$(nproc) CPUs ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')), medians of $RUNS runs of ${SECS}s"
echo
echo "| N loops and connections | round trips/s | speedup over N=${COUNTS[0]} |"
echo "|---|---|---|"
base=$(echo "${samples[${COUNTS[0]}]}" | median)
for count in "${COUNTS[@]}"; do
    value=$(echo "${samples[$count]}" | median)
    awk -v n="$count" -v v="$value" -v b="$base" 'BEGIN {printf "| %d | %.0f | %.2fx |\n", n, v, v / b}'
done
echo
for count in "${COUNTS[@]}"; do echo "  N=$count: ${samples[$count]}"; done
