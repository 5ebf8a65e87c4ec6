#!/usr/bin/env bash
# Instructions per round trip of `evpl perf client`, counted by callgrind:
# the repeatable measure of the per-operation cost of the stream path.
#
#   Benchmarks/callgrind-roundtrip.sh [EVPL_BINARY ...]
#
# For each binary (the release build by default), each backend (socket,
# io_uring) and depth (1, 16), a perf server runs natively and the client
# runs under callgrind with EVPL_SPIN_NS=0 (spin passes depend on timing).
# Two runs of different lengths are subtracted, so that start-up and
# tear-down cancel out: (instructions(long) - instructions(short)) /
# (round trips(long) - round trips(short)). Give two binaries (before and
# after a change, built the same way) to compare them in one run.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ $# -eq 0 ]; then
    swift build -c release --product evpl >/dev/null
    set -- "$(swift build -c release --show-bin-path)/evpl"
fi
command -v valgrind >/dev/null || { echo "valgrind is not installed (apt-get install valgrind)" >&2; exit 1; }

work=$(mktemp -d)
server_pid=
trap '[ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null; rm -rf "$work"' EXIT

# Instructions and round trips of one client run of $4 seconds.
client_run() {
    local binary=$1 backend=$2 depth=$3 seconds=$4 port=$5
    local out="$work/cg.$seconds"
    local json
    json=$(EVPL_SPIN_NS=0 valgrind --tool=callgrind --callgrind-out-file="$out" "$binary" perf client \
        --backend "$backend" --port "$port" --depth "$depth" --size 64 --duration "$seconds" --json 2>/dev/null)
    local instructions operations
    instructions=$(awk '/^summary:/ { print $2 }' "$out")
    operations=$(python3 -c 'import json, sys; print(json.loads(sys.argv[1])["operations"])' "$json")
    echo "$instructions $operations"
}

printf '%-40s %-9s %5s %14s\n' binary backend depth instr/roundtrip
for binary in "$@"; do
    copy="$work/evpl-cg"
    cp "$binary" "$copy"
    strip -g "$copy"
    for backend in socket io_uring; do
        for depth in 1 16; do
            port=$((20000 + RANDOM % 20000))
            "$binary" perf server --backend "$backend" --port "$port" >/dev/null 2>&1 &
            server_pid=$!
            sleep 0.3
            read -r short_i short_n < <(client_run "$copy" "$backend" "$depth" 2 "$port")
            read -r long_i long_n < <(client_run "$copy" "$backend" "$depth" 6 "$port")
            kill "$server_pid"; wait "$server_pid" 2>/dev/null || true
            server_pid=
            per=$(python3 -c "print(round(($long_i - $short_i) / ($long_n - $short_n)))")
            printf '%-40s %-9s %5s %14s\n' "$binary" "$backend" "$depth" "$per"
        done
    done
done
