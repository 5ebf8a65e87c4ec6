#!/usr/bin/env bash
# `evpl blk` beside fio with the same engine, in one run: 4 KiB random reads
# on a 1 GiB file at depth 1 and 32, buffered (page cache) and O_DIRECT, and
# the null engines for per-I/O overhead. Alternating runs, medians, ratios.
#
#   Benchmarks/block.sh [RUNS] [SECONDS] [FILE]
#
# Needs: fio (apt-get install -y fio).
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${1:-5}
SECS=${2:-3}
FILE=${3:-/var/tmp/evpl-bench-1g.img}
swift build -c release --product evpl >/dev/null
source Benchmarks/lib.sh

# A real 1 GiB of data (not a hole), then in the page cache for the buffered rows.
if [ "$(stat -c %s "$FILE" 2>/dev/null || echo 0)" != "1073741824" ]; then
    "$EVPL" blk --path "$FILE" --rw write --bs 1048576 --iodepth 8 --size 1073741824 --runtime 600 --engine io_uring --verify >/dev/null
fi
cat "$FILE" >/dev/null

evpl_iops() { # engine depth direct(0/1)
    local direct=(); [ "$3" = 1 ] && direct=(--direct)
    "$EVPL" blk --path "$FILE" --rw randread --bs 4096 --iodepth "$2" --size 1073741824 --runtime "$SECS" --engine "$1" "${direct[@]}" --json |
        sed -E 's/.*"iops":([0-9.]+).*/\1/'
}

fio_iops() { # engine depth direct(0/1)
    fio --name=r --filename="$FILE" --size=1g --rw=randread --bs=4k --ioengine="$1" --iodepth="$2" --direct="$3" \
        --runtime="$SECS" --time_based --invalidate=0 --output-format=json 2>/dev/null |
        python3 -c 'import json,sys; text=sys.stdin.read(); print("%.1f" % json.loads(text[text.index("{"):])["jobs"][0]["read"]["iops"])'
}

configs=()
for engine in io_uring libaio psync; do
    for depth in 1 32; do
        for direct in 0 1; do configs+=("$engine $depth $direct"); done
    done
done

for run in $(seq "$RUNS"); do
    for config in "${configs[@]}"; do
        set -- $config
        sample "evpl_$1_$2_$3" "$(evpl_iops "$1" "$2" "$3")"
        sample "fio_$1_$2_$3" "$(fio_iops "$1" "$2" "$3")"
    done
    sample evpl_null "$(evpl_iops null 1 0)"
    sample fio_null "$(fio_iops null 1 0)"
    echo "run $run done" >&2
done

echo "| 4 KiB randread, 1 GiB file | evpl blk IOPS | fio IOPS | evpl/fio |"
echo "|---|---|---|---|"
for config in "${configs[@]}"; do
    set -- $config
    mode=buffered; [ "$3" = 1 ] && mode=O_DIRECT
    echo "| $1, depth $2, $mode | $(m "evpl_$1_$2_$3") | $(m "fio_$1_$2_$3") | $(ratio "$(m "evpl_$1_$2_$3")" "$(m "fio_$1_$2_$3")") |"
done
ns() { awk -v iops="$1" 'BEGIN {printf "%.0f", 1e9 / iops}'; }
echo "| null engine, depth 1 (ns per I/O) | $(ns "$(m evpl_null)") | $(ns "$(m fio_null)") | $(ratio "$(m fio_null)" "$(m evpl_null)") |"
echo
echo "medians of $RUNS runs of ${SECS}s, alternating; raw samples:"
for config in "${configs[@]}"; do set -- $config; raw "evpl_$1_$2_$3" "fio_$1_$2_$3"; done
raw evpl_null fio_null
