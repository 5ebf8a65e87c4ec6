#!/usr/bin/env bash
# Instructions per block I/O of `evpl blk`, counted by callgrind: the
# repeatable measure of the block path's per-request cost, beside fio's.
#
#   Benchmarks/callgrind-block.sh [EVPL_BINARY ...]
#
# For each binary (the release build by default) and each job below, two
# runs of 4 KiB random reads that end after a fixed number of I/Os (8,192
# and 65,536) are counted and subtracted, so that start-up and tear-down
# cancel out (`evpl_blk_instructions` in lib.sh). Give two binaries (before
# and after a change, built the same way) to compare them in one run; fio's
# own jobs come last. The io_uring rows read a 256 MiB file through the page
# cache (CALLGRIND_FILE, made and cached first); the null engine moves no
# data. The loop never sleeps in these jobs, so the counts repeat.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ $# -eq 0 ]; then
    swift build -c release --product evpl >/dev/null
    set -- "$(swift build -c release --show-bin-path)/evpl"
fi
command -v valgrind >/dev/null || { echo "valgrind is not installed (apt-get install valgrind)" >&2; exit 1; }
source Benchmarks/lib.sh
EVPL=$1 callgrind_file

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# ENGINE DEPTH API
JOBS=("null 1 callbacks" "null 32 callbacks" "null 32 async" "null 32 async-stream" "io_uring 1 callbacks" "io_uring 32 callbacks")

printf '%-40s %-9s %5s %-13s %10s\n' binary engine depth api instr/I/O
for binary in "$@"; do
    copy="$work/evpl-cg"
    cp "$binary" "$copy"
    strip -g "$copy"
    for job in "${JOBS[@]}"; do
        read -r engine depth api <<<"$job"
        printf '%-40s %-9s %5s %-13s %10s\n' "$binary" "$engine" "$depth" "$api" "$(evpl_blk_instructions "$copy" "$engine" "$depth" "$api")"
    done
done
if command -v fio >/dev/null; then
    for job in "null 1" "null 32" "io_uring 1" "io_uring 32"; do
        read -r engine depth <<<"$job"
        printf '%-40s %-9s %5s %-13s %10s\n' fio "$engine" "$depth" - "$(fio_blk_instructions "$engine" "$depth")"
    done
fi
