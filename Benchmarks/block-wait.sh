#!/usr/bin/env bash
# 4 KiB block I/O at depth 1 under each wait policy: IOPS beside the CPU
# the whole process used (user + system, as a share of one CPU), medians of
# the runs. Depth 1 is where the wait decides: every completion is awaited.
#
#   Benchmarks/block-wait.sh [--runs N] [--seconds S] [--policies "adaptive fixed sleep"]
#                            [--jobs "io_uring:randread:direct ..."]
#
# A job is ENGINE:RW:MODE (MODE direct or buffered). Uses BLOCK_FILE (see lib.sh).
# Needs /usr/bin/time (apt-get install -y time).
set -euo pipefail
cd "$(dirname "$0")/.."

RUNS=3
SECS=2
POLICIES="adaptive fixed sleep"
JOBS="io_uring:randread:direct libaio:randread:direct psync:randread:direct psync:randwrite:buffered"
while [ $# -gt 0 ]; do
    case "$1" in
        --runs) RUNS=$2; shift ;;
        --seconds) SECS=$2; shift ;;
        --policies) POLICIES=$2; shift ;;
        --jobs) JOBS=$2; shift ;;
        *) echo "usage: $0 [--runs N] [--seconds S] [--policies P] [--jobs J]" >&2; exit 2 ;;
    esac
    shift
done
swift build -c release --product evpl >/dev/null
source Benchmarks/lib.sh
prepare_block_file

# one POLICY ENGINE RW MODE -> "iops cpu%"
one() {
    local direct=(); [ "$4" = direct ] && direct=(--direct)
    local times; times=$(mktemp)
    local json
    json=$(EVPL_WAIT_POLICY=$1 /usr/bin/time -o "$times" -f "%U %S" "$EVPL" blk --path "$BLOCK_FILE" --rw "$3" --bs 4096 \
        --iodepth 1 --size 1073741824 --runtime "$SECS" --time-based --engine "$2" "${direct[@]}" --json)
    echo "$(echo "$json" | json_field iops) $(awk -v s="$SECS" '{ printf "%.1f", ($1 + $2) / s * 100 }' "$times")"
    rm -f "$times"
}

echo "| engine | job | policy | IOPS | CPU (of one) | IOPS per CPU second |"
echo "|---|---|---|---|---|---|"
for job in $JOBS; do
    IFS=: read -r engine rw mode <<<"$job"
    for policy in $POLICIES; do
        results=()
        for _ in $(seq "$RUNS"); do results+=("$(one "$policy" "$engine" "$rw" "$mode")"); done
        iops=$(printf '%s\n' "${results[@]}" | awk '{ print $1 }' | median)
        cpu=$(printf '%s\n' "${results[@]}" | awk '{ print $2 }' | median)
        per=$(python3 -c "print('%.0f' % ($iops / ($cpu / 100)) if $cpu > 0 else 'n/a')")
        printf '| %s | %s, %s, depth 1 | %s | %.0f | %s%% | %s |\n' "$engine" "$rw" "$mode" "$policy" "$iops" "$cpu" "$per"
    done
done
