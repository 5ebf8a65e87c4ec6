#!/usr/bin/env bash
# The attacks of the hostile-client audit, measured against the release
# `evpl` servers on loopback (Benchmarks/HostilePeers/attack.py drives the
# clients). One line per trial; medians at the end of each group.
#
#   Benchmarks/hostile-peers.sh [--trials N] [GROUP...]
#
# GROUPs (default: all):
#   half-hello   1,100 connections send half a ClientHello to `evpl echo --tls`
#                at a 64 MiB pool ceiling, hold 5 s and close: seconds until a
#                new TLS client is served, per backend.
#   idle         19,000 connections (the file limit here is 20,000 a process)
#                that send nothing to `evpl echo --idle-timeout 5`: how many
#                are closed in time, and RSS before, with them, and after.
#   nonreading   400 clients write without reading to `evpl echo --threads 4`
#                with a 256 MiB process budget: peak RSS.
#   handshakes   full TLS handshakes/s of `evpl perf --mode handshake` against
#                `evpl perf server --tls` alone, beside a KeyUpdate flood, and
#                beside ffdhe8192 attempts.
set -euo pipefail
cd "$(dirname "$0")/.."
TRIALS=10
GROUPS_CHOSEN=()
while [ $# -gt 0 ]; do
    case "$1" in
        --trials) TRIALS=$2; shift ;;
        half-hello|idle|nonreading|handshakes) GROUPS_CHOSEN+=("$1") ;;
        *) echo "usage: $0 [--trials N] [half-hello|idle|nonreading|handshakes ...]" >&2; exit 2 ;;
    esac
    shift
done
[ ${#GROUPS_CHOSEN[@]} -eq 0 ] && GROUPS_CHOSEN=(half-hello idle nonreading handshakes)
ulimit -n "$(ulimit -Hn)"
swift build -c release --product evpl >/dev/null
EVPL=$(swift build -c release --show-bin-path)/evpl
ATTACK="python3 Benchmarks/HostilePeers/attack.py"
WORK=$(mktemp -d)
SERVER=
trap 'stop_server; rm -rf "$WORK"; jobs -p | xargs -r kill 2>/dev/null || true' EXIT
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -keyout "$WORK/key.pem" -out "$WORK/cert.pem" \
    -days 2 -nodes -subj /CN=localhost -addext subjectAltName=DNS:localhost,IP:127.0.0.1 2>/dev/null
TLS=(--tls --tls-cert "$WORK/cert.pem" --tls-key "$WORK/key.pem")

# start_server ENV... -- ARGS...: runs evpl, sets SERVER and PORT.
start_server() {
    local environment=()
    while [ "$1" != "--" ]; do environment+=("$1"); shift; done
    shift
    env "${environment[@]}" "$EVPL" "$@" --port 0 >"$WORK/listening" &
    SERVER=$!
    for _ in $(seq 200); do grep -q "listening on" "$WORK/listening" 2>/dev/null && break; sleep 0.05; done
    PORT=$(sed -n 's/.*:\([0-9]*\)$/\1/p' "$WORK/listening")
}
stop_server() {
    [ -n "$SERVER" ] || return 0
    kill -TERM "$SERVER" 2>/dev/null || true
    wait "$SERVER" 2>/dev/null || true
    SERVER=
}
median() { sort -g | awk '{ v[NR] = $1 } END { if (NR == 0) print "n/a"; else if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

for group in "${GROUPS_CHOSEN[@]}"; do
    case "$group" in
    half-hello)
        echo "== half-hello flood: 1,100 half ClientHellos held 5 s at EVPL_POOL_MAX_BYTES=67108864, then a new client"
        for backend in socket io_uring; do
            : >"$WORK/served"
            for trial in $(seq "$TRIALS"); do
                start_server EVPL_POOL_MAX_BYTES=67108864 -- echo "${TLS[@]}" --backend "$backend"
                line=$($ATTACK half-hello "$PORT" 1100 5 "$WORK/cert.pem")
                echo "$backend trial $trial: $line"
                echo "$line" | sed -n 's/served_after_s=\([0-9.]*\)/\1/p' >>"$WORK/served"
                stop_server
            done
            echo "$backend: served in $(wc -l <"$WORK/served") of $TRIALS trials, median $(median <"$WORK/served") s, worst $(sort -g "$WORK/served" | tail -1) s"
        done
        ;;
    idle)
        echo "== 19,000 idle connections, --idle-timeout 5 --handshake-timeout 0"
        for backend in socket io_uring; do
            start_server -- echo --backend "$backend" --idle-timeout 5 --handshake-timeout 0
            echo "$backend: $($ATTACK idle "$PORT" 19000 "$SERVER" 5)"
            stop_server
        done
        ;;
    nonreading)
        echo "== 400 non-reading clients for 5 s, evpl echo --threads 4, EVPL_PROCESS_POOL_MAX_BYTES=268435456"
        for backend in socket io_uring; do
            start_server EVPL_PROCESS_POOL_MAX_BYTES=268435456 -- echo --backend "$backend" --threads 4
            echo "$backend: $($ATTACK nonreading "$PORT" 400 5 "$SERVER")"
            stop_server
        done
        ;;
    handshakes)
        echo "== full TLS handshakes/s (evpl perf --mode handshake --connections 4), alone and beside attacks"
        start_server -- perf server "${TLS[@]}"
        rate() { "$EVPL" perf client --mode handshake --tls --tls-ca "$WORK/cert.pem" --host 127.0.0.1 --port "$PORT" \
                     --connections 4 --duration 3 --json | python3 -c "import json,sys; print(round(json.load(sys.stdin)['ops_per_sec']))"; }
        # Each attacker runs in a process group of its own, so that stopping it stops its openssl too.
        keyupdates="while :; do for _ in \$(seq 200); do echo K; sleep 0.002; done | openssl s_client -connect 127.0.0.1:$PORT -tls1_3 >/dev/null 2>&1; done"
        ffdhe="while :; do openssl s_client -connect 127.0.0.1:$PORT -groups ffdhe8192 </dev/null >/dev/null 2>&1; done"
        beside() { setsid bash -c "$1" & local attacker=$!; sleep 0.5; rate; kill -- "-$attacker" 2>/dev/null || true; wait "$attacker" 2>/dev/null || true; }
        for trial in $(seq "$TRIALS"); do
            alone=$(rate)
            flooded=$(beside "$keyupdates")
            dhe=$(beside "$ffdhe")
            echo "trial $trial: alone $alone/s, KeyUpdate flood $flooded/s, ffdhe8192 attempts $dhe/s"
            echo "$flooded $alone" | awk '{ print $1 / $2 }' >>"$WORK/keyupdate"
            echo "$dhe $alone" | awk '{ print $1 / $2 }' >>"$WORK/ffdhe"
        done
        echo "median ratio to alone: KeyUpdate flood $(median <"$WORK/keyupdate"), ffdhe8192 attempts $(median <"$WORK/ffdhe")"
        stop_server
        ;;
    esac
done
