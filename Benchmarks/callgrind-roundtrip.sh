#!/usr/bin/env bash
# Instructions per round trip of `evpl perf client`, counted by callgrind:
# the repeatable measure of the per-operation cost of the stream path.
#
#   Benchmarks/callgrind-roundtrip.sh [--repeat N] [EVPL_BINARY ...]
#
# For each binary (the release build by default), each backend (socket,
# io_uring) and depth (1, 16), a perf server runs natively and the client
# runs under callgrind with EVPL_SPIN_NS=0 (spin passes depend on timing).
# Two runs of different lengths are subtracted, so that start-up and
# tear-down cancel out: (instructions(long) - instructions(short)) /
# (round trips(long) - round trips(short)). Give two binaries (before and
# after a change, built the same way) to compare them in one run.
# io_uring counts vary with how completions batch (the server runs at full
# speed beside a client slowed by valgrind): --repeat N (default 3) gives
# the median of N measurements, each with its own server.
set -euo pipefail
cd "$(dirname "$0")/.."

repeat=3
if [ "${1:-}" = "--repeat" ]; then repeat=$2; shift 2; fi

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

printf '%-40s %-9s %5s %14s   %s\n' binary backend depth instr/roundtrip '(each run)'
for binary in "$@"; do
    copy="$work/evpl-cg"
    cp "$binary" "$copy"
    strip -g "$copy"
    for backend in socket io_uring; do
        for depth in 1 16; do
            counts=()
            for _ in $(seq "$repeat"); do
                port=$((20000 + RANDOM % 20000))
                "$binary" perf server --backend "$backend" --port "$port" >/dev/null 2>&1 &
                server_pid=$!
                sleep 0.3
                read -r short_i short_n < <(client_run "$copy" "$backend" "$depth" 2 "$port")
                read -r long_i long_n < <(client_run "$copy" "$backend" "$depth" 6 "$port")
                kill "$server_pid"; wait "$server_pid" 2>/dev/null || true
                server_pid=
                counts+=("$(python3 -c "print(round(($long_i - $short_i) / ($long_n - $short_n)))")")
            done
            median=$(printf '%s\n' "${counts[@]}" | sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }')
            printf '%-40s %-9s %5s %14s   (%s)\n' "$binary" "$backend" "$depth" "$median" "${counts[*]}"
        done
    done
done
