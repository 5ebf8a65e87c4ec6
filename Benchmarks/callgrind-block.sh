#!/usr/bin/env bash
# Instructions per block I/O of `evpl blk`, counted by callgrind: the
# repeatable measure of the block path's per-request cost.
#
#   Benchmarks/callgrind-block.sh [EVPL_BINARY ...]
#
# For each binary (the release build by default) and each job below, two
# runs of 4 KiB random reads that end after a fixed size (8,192 and 65,536
# I/Os) are counted, and subtracted so that start-up and tear-down cancel
# out: (instructions(long) - instructions(short)) / (I/Os(long) - I/Os(short)).
# Give two binaries (before and after a change, built the same way) to
# compare them in one run. The io_uring rows read a 256 MiB file through the
# page cache (BLOCK_FILE, made and cached first); the null engine moves no
# data. The loop never sleeps in these jobs, so the counts repeat.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ $# -eq 0 ]; then
    swift build -c release --product evpl >/dev/null
    set -- "$(swift build -c release --show-bin-path)/evpl"
fi
command -v valgrind >/dev/null || { echo "valgrind is not installed (apt-get install valgrind)" >&2; exit 1; }
BLOCK_FILE=${BLOCK_FILE:-/var/tmp/evpl-cg.img}
SIZE=268435456
if [ "$(stat -c %s "$BLOCK_FILE" 2>/dev/null || echo 0)" != "$SIZE" ]; then
    "$1" blk --path "$BLOCK_FILE" --rw write --bs 1048576 --iodepth 8 --size "$SIZE" --runtime 600 --engine io_uring >/dev/null
fi
cat "$BLOCK_FILE" >/dev/null

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# JOBS: ENGINE DEPTH API
JOBS=("null 1 callbacks" "null 32 callbacks" "null 32 async" "null 32 async-stream" "io_uring 1 callbacks" "io_uring 32 callbacks")

# Instructions and I/Os of one run that ends after $5 bytes.
blk_run() {
    local binary=$1 engine=$2 depth=$3 api=$4 size=$5
    local out="$work/cg.$size"
    local json
    json=$(EVPL_SPIN_NS=0 valgrind --tool=callgrind --callgrind-out-file="$out" "$binary" blk --path "$BLOCK_FILE" \
        --rw randread --bs 4096 --iodepth "$depth" --size "$size" --runtime 600 --engine "$engine" --api "$api" --json 2>/dev/null)
    local instructions operations
    instructions=$(awk '/^summary:/ { print $2 }' "$out")
    operations=$(python3 -c 'import json, sys; print(json.loads(sys.argv[1])["operations"])' "$json")
    echo "$instructions $operations"
}

printf '%-40s %-9s %5s %-13s %10s\n' binary engine depth api instr/I/O
for binary in "$@"; do
    copy="$work/evpl-cg"
    cp "$binary" "$copy"
    strip -g "$copy"
    for job in "${JOBS[@]}"; do
        set -- $job
        read -r short_i short_n < <(blk_run "$copy" "$1" "$2" "$3" $((SIZE / 8)))
        read -r long_i long_n < <(blk_run "$copy" "$1" "$2" "$3" "$SIZE")
        printf '%-40s %-9s %5s %-13s %10s\n' "$binary" "$1" "$2" "$3" \
            "$(python3 -c "print(round(($long_i - $short_i) / ($long_n - $short_n)))")"
    done
done
