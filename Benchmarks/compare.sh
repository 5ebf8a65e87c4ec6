#!/usr/bin/env bash
# Before and after: the ping-pong and stream measurements of run.sh for two
# evpl binaries, alternating A/B/A/B in one run, with the medians and the
# after/before ratio of each. For a change that must cost nothing (flow
# control, checks on the hot path), every ratio should be within noise.
#
#   Benchmarks/compare.sh [--runs N] [--seconds S] BEFORE_EVPL AFTER_EVPL
#
# ONLY=text limits the run to the scenarios whose name contains it.
#
# Build the "before" binary from a worktree, for example:
#   git worktree add /tmp/evpl-before <commit> && (cd /tmp/evpl-before && swift build -c release --product evpl)
#   swift build -c release --product evpl
#   Benchmarks/compare.sh /tmp/evpl-before/.build/release/evpl .build/release/evpl
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=5
SECS=3
while [ $# -gt 2 ]; do
    case "$1" in
        --runs) RUNS=$2; shift ;;
        --seconds) SECS=$2; shift ;;
        *) echo "usage: $0 [--runs N] [--seconds S] BEFORE_EVPL AFTER_EVPL" >&2; exit 2 ;;
    esac
    shift
done
[ $# -eq 2 ] || { echo "usage: $0 [--runs N] [--seconds S] BEFORE_EVPL AFTER_EVPL" >&2; exit 2; }
BEFORE=$1
AFTER=$2
source Benchmarks/lib.sh

# name|command (with EVPL set by the caller)|unit
SCENARIOS=(
    "TCP ping-pong 64 B depth 1, one CPU, socket|evpl_pingpong tcp socket 0 0 1|round trips/s"
    "TCP ping-pong 64 B depth 1, one CPU, io_uring|evpl_pingpong tcp io_uring 0 0 1|round trips/s"
    "TCP ping-pong 64 B depth 16, CPUs 0 and 1, socket|evpl_pingpong tcp socket 0 1 16|round trips/s"
    "TCP ping-pong 64 B depth 16, CPUs 0 and 1, io_uring|evpl_pingpong tcp io_uring 0 1 16|round trips/s"
    "TCP stream 128 KiB, socket|evpl_stream socket|Gbit/s"
    "TCP stream 128 KiB, io_uring|evpl_stream io_uring|Gbit/s"
)

# Above the ephemeral range (32768-60999), where a lingering client socket can hold a port.
port=61000
echo "| scenario | unit | before (median) | after (median) | after/before |"
echo "|---|---|---|---|---|"
for scenario in "${SCENARIOS[@]}"; do
    IFS='|' read -r name command unit <<<"$scenario"
    [[ "$name" == *"${ONLY:-}"* ]] || continue
    before=()
    after=()
    for _ in $(seq "$RUNS"); do
        port=$((port + 1)); before+=("$(EVPL=$BEFORE; $command $port)")
        port=$((port + 1)); after+=("$(EVPL=$AFTER; $command $port)")
    done
    python3 - "$name" "$unit" "${before[*]}" "${after[*]}" <<'EOF'
import statistics, sys
name, unit, before, after = sys.argv[1], sys.argv[2], [float(x) for x in sys.argv[3].split()], [float(x) for x in sys.argv[4].split()]
b, a = statistics.median(before), statistics.median(after)
print(f"| {name} | {unit} | {b:,.2f} | {a:,.2f} | {a / b:.3f} |")
print(f"<!-- before {before} after {after} -->")
EOF
done
