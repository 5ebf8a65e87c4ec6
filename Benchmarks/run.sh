#!/usr/bin/env bash
# swift-evpl beside what its users measure it against, from one command:
# sockperf, iperf3, fio and a SwiftNIO client/server pair. Every pair is
# measured in the same run, alternating A/B/A/B, and reported as medians and
# ratios in Benchmarks/results/ (markdown, JSON and a PNG chart of the ratios).
#
#   Benchmarks/run.sh [--quick] [--runs N] [--seconds S] [GROUP...]
#
# GROUPs: tcp udp deep connections stream hybrid scaling block async tls instructions http
# (default: all of them).
# --quick: 3 runs of 1 s each, to check that everything works.
# Needs: apt-get install -y sockperf iperf3 fio; python3 with matplotlib for the chart
# (installed from PyPI when missing). Builds the release binaries first.
set -euo pipefail
cd "$(dirname "$0")/.."

INVOCATION="Benchmarks/run.sh${*:+ $*}"
RUNS=5
SECS=3
QUICK=
GROUPS_CHOSEN=()
while [ $# -gt 0 ]; do
    case "$1" in
        --quick) RUNS=3; SECS=1; QUICK=-quick ;;
        --runs) RUNS=$2; shift ;;
        --seconds) SECS=$2; shift ;;
        tcp|udp|deep|connections|stream|hybrid|scaling|block|async|tls|instructions|http) GROUPS_CHOSEN+=("$1") ;;
        *) echo "usage: $0 [--quick] [--runs N] [--seconds S] [tcp|udp|deep|connections|stream|hybrid|scaling|block|async|tls|instructions|http ...]" >&2; exit 2 ;;
    esac
    shift
done
# A full run of every group writes results/latest.*; a quick run or a run of
# some groups writes results/latest-quick-GROUP-....*, never replacing the full table.
NAME=latest$QUICK
for group in "${GROUPS_CHOSEN[@]}"; do NAME+="-$group"; done
[ ${#GROUPS_CHOSEN[@]} -eq 0 ] && GROUPS_CHOSEN=(tcp udp deep connections stream hybrid scaling block async tls instructions http)
chosen() { [[ " ${GROUPS_CHOSEN[*]} " == *" $1 "* ]]; }

for tool in sockperf iperf3 fio taskset python3 openssl; do
    command -v "$tool" >/dev/null || { echo "$tool is missing: apt-get install -y sockperf iperf3 fio" >&2; exit 1; }
done
echo "building release binaries" >&2
swift build -c release --product evpl >/dev/null
(cd Benchmarks/NIOPeer && swift build -c release >/dev/null)
if chosen http; then
    for tool in wrk nginx curl; do
        command -v "$tool" >/dev/null || { echo "$tool is missing: apt-get install -y wrk nginx-light curl" >&2; exit 1; }
    done
    (cd Benchmarks/HummingbirdPeer && swift build -c release >/dev/null)
    # wrk and the servers hold a descriptor per connection: 1,000 of them and more.
    ulimit -n 8192
fi
source Benchmarks/lib.sh

RESULTS=Benchmarks/results
mkdir -p "$RESULTS"
SAMPLES=$(mktemp)
PAIRS=$(mktemp)
trap 'rm -f "$SAMPLES" "$PAIRS"' EXIT

# sample KEY VALUE: one measurement (an empty value means the tool failed).
sample() { printf '%s\t%s\n' "$1" "${2:-nan}" >>"$SAMPLES"; }
# pair GROUP SCENARIO UNIT SUBJECT_KEY SUBJECT_LABEL REFERENCE_KEY REFERENCE_LABEL
pair() { printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$@" >>"$PAIRS"; }

BACKENDS=(socket io_uring)
BLOCK_CONFIGS=()
for engine in io_uring libaio psync; do
    for depth in 1 32; do
        for direct in 0 1; do BLOCK_CONFIGS+=("$engine $depth $direct"); done
    done
done

# The pairs each group reports, subject (swift-evpl) first.
for transport in tcp udp; do
    chosen $transport || continue
    for backend in "${BACKENDS[@]}"; do
        for reference in sockperf:sockperf nio:SwiftNIO; do
            pair $transport "${transport^^} ping-pong 64 B, depth 1, both ends on CPU 0" "round trips/s" \
                "${transport}_$backend" "evpl $backend" "${transport}_${reference%%:*}" "${reference#*:}"
        done
    done
done
if chosen deep; then
    for backend in "${BACKENDS[@]}"; do
        pair deep "TCP ping-pong 64 B, depth 16, server CPU 0, client CPU 1" "round trips/s" "deep_$backend" "evpl $backend" deep_nio SwiftNIO
    done
fi
if chosen connections; then
    for connections in 100 1000; do
        MANY="TCP ping-pong 64 B, $connections connections at depth 1, server CPU 0, client CPU 1"
        pair connections "$MANY" "round trips/s" "many_io_uring_$connections" "evpl io_uring" "many_socket_$connections" "evpl socket"
        pair connections "$MANY" "round trips/s" "many_io_uring_$connections" "evpl io_uring" "many_nio_$connections" SwiftNIO
    done
fi
if chosen instructions; then
    # Instructions per I/O under callgrind (fewer is better: the ratio is fio's count over evpl's).
    pair instructions "null engine, depth 1, 4 KiB random reads" "instructions per I/O" cg_null_1 "evpl blk" cg_fio_null_1 fio
    pair instructions "null engine, depth 32, 4 KiB random reads" "instructions per I/O" cg_null_32 "evpl blk" cg_fio_null_32 fio
    pair instructions "io_uring, depth 1, 4 KiB random reads from the page cache" "instructions per I/O" cg_uring_1 "evpl blk" cg_fio_uring_1 fio
    pair instructions "null engine, depth 32, per request" "instructions per I/O" cg_null_32_async "evpl blk async" cg_null_32 "evpl blk callbacks"
    CALLGRIND_COPY=$(mktemp)
    cp "$EVPL" "$CALLGRIND_COPY" && chmod +x "$CALLGRIND_COPY" && strip -g "$CALLGRIND_COPY"
    trap 'rm -f "$SAMPLES" "$PAIRS" "$CALLGRIND_COPY"' EXIT
    callgrind_file
fi
if chosen http; then
    HELLO="HTTP/1.1 GET hello world, keep-alive, wrk -t1 -c64, server CPU 0, wrk CPU 1"
    pair http "$HELLO" "requests/s" http_evpl_64_rps "evpl http" http_nginx_64_rps "nginx, 1 worker"
    pair http "$HELLO" "requests/s" http_evpl_64_rps "evpl http" http_hummingbird_64_rps "Hummingbird 2"
    pair http "$HELLO" "µs at p50" http_evpl_64_p50 "evpl http" http_nginx_64_p50 "nginx, 1 worker"
    pair http "$HELLO" "µs at p99" http_evpl_64_p99 "evpl http" http_nginx_64_p99 "nginx, 1 worker"
    pair http "$HELLO" "server CPU µs per request" http_evpl_64_cpu "evpl http" http_nginx_64_cpu "nginx, 1 worker"
    ONE="HTTP/1.1 GET hello world, keep-alive, wrk -t1 -c1, server CPU 0, wrk CPU 1"
    pair http "$ONE" "µs at p50" http_evpl_1_p50 "evpl http" http_nginx_1_p50 "nginx, 1 worker"
    pair http "$ONE" "requests/s" http_evpl_1_rps "evpl http" http_nginx_1_rps "nginx, 1 worker"
    pair http "$ONE" "server CPU µs per request" http_evpl_1_cpu "evpl http" http_nginx_1_cpu "nginx, 1 worker"
    THOUSAND="HTTP/1.1 GET hello world, 1,000 keep-alive connections, wrk -t1, server CPU 0, wrk CPU 1"
    pair http "$THOUSAND" "requests/s" http_evpl_1000_rps "evpl http" http_nginx_1000_rps "nginx, 1 worker"
    pair http "$THOUSAND" "server CPU µs per request" http_evpl_1000_cpu "evpl http" http_nginx_1000_cpu "nginx, 1 worker"
    FILE="HTTP/1.1 GET of a 1 MiB file from the page cache, keep-alive, wrk -t1 -c16, server CPU 0, wrk CPU 1"
    pair http "$FILE" "Gbit/s" http_evpl_file_gbps "evpl http --root (block engine)" http_nginx_file_gbps "nginx, 1 worker, sendfile on"
    pair http "$FILE" "server CPU µs per request" http_evpl_file_cpu "evpl http --root (block engine)" http_nginx_file_cpu "nginx, 1 worker, sendfile on"
    HTTP_ROOT=$(mktemp -d)
    head -c 1048576 /dev/urandom >"$HTTP_ROOT/file.bin"
    # nginx's worker runs as nobody.
    chmod 755 "$HTTP_ROOT" && chmod 644 "$HTTP_ROOT/file.bin"
    trap 'rm -f "$SAMPLES" "$PAIRS" "${CALLGRIND_COPY:-}"; rm -rf "$HTTP_ROOT"' EXIT
fi
if chosen stream; then
    for backend in "${BACKENDS[@]}"; do
        pair stream "TCP stream, 128 KiB writes, one connection" "Gbit/s" "stream_$backend" "evpl $backend" stream_iperf3 iperf3
        pair stream "TCP stream, 128 KiB writes, one connection" "Gbit/s" "stream_$backend" "evpl $backend" stream_nio SwiftNIO
    done
fi
if chosen hybrid; then
    for depth in 1 16; do
        pair hybrid "TCP ping-pong 64 B, depth $depth, server CPU 0, client CPU 1" "round trips/s" hybrid_adaptive_$depth "evpl adaptive (default)" hybrid_fixed_$depth "evpl fixed window"
        pair hybrid "TCP ping-pong 64 B, depth $depth, server CPU 0, client CPU 1" "round trips/s" hybrid_adaptive_$depth "evpl adaptive (default)" hybrid_sleep_$depth "evpl sleep"
    done
fi
if chosen scaling; then
    pair scaling "TCP ping-pong 64 B, depth 16, N loops and connections (unpinned)" "round trips/s" scaling_2 "evpl N=2" scaling_1 "evpl N=1"
fi
if chosen block; then
    for config in "${BLOCK_CONFIGS[@]}"; do
        set -- $config
        mode=buffered; [ "$3" = 1 ] && mode=O_DIRECT
        pair block "4 KiB random read, 1 GiB file, $1, depth $2, $mode" IOPS "blk_evpl_$1_$2_$3" "evpl blk" "blk_fio_$1_$2_$3" fio
    done
    pair block "null engine, depth 1 (per-I/O overhead)" IOPS blk_evpl_null "evpl blk" blk_fio_null fio
fi
if chosen async; then
    pair async "TCP ping-pong 64 B, depth 1, both ends on CPU 0" "round trips/s" async_d1 "evpl async" callbacks_d1 "evpl callbacks"
    pair async "TCP ping-pong 64 B, depth 16, server CPU 0, client CPU 1" "round trips/s" async_d16 "evpl async" callbacks_d16 "evpl callbacks"
    pair async "TCP ping-pong 64 B, depth 1, both ends on CPU 0" "round trips/s" async_d1 "evpl async" nio_async_d1 "NIOAsyncChannel"
    pair async "TCP ping-pong 64 B, depth 16, server CPU 0, client CPU 1" "round trips/s" async_d16 "evpl async" nio_async_d16 "NIOAsyncChannel"
    pair async "4 KiB random read, 1 GiB file, io_uring, depth 32, buffered" IOPS blk_async "evpl blk async" blk_callbacks "evpl blk callbacks"
    pair async "4 KiB random read, 1 GiB file, io_uring, depth 32, buffered" IOPS blk_stream "evpl blk async-stream" blk_callbacks "evpl blk callbacks"
    pair async "null engine, depth 32 (per-request cost of each layer)" IOPS blk_null_async "evpl blk async" blk_null_callbacks "evpl blk callbacks"
fi
if chosen tls; then
    TLS_STREAM="TLS 1.3 stream, 128 KiB writes, AES-128-GCM, server CPU 0, client CPU 1"
    pair tls "$TLS_STREAM" "Gbit/s" tls_stream "evpl" tls_stream_nio "SwiftNIO + NIO-SSL"
    pair tls "$TLS_STREAM" "Gbit/s" tls_stream "evpl" tls_cipher "AES-128-GCM alone, one core (openssl speed, 16 KiB)"
    pair tls "TLS 1.3 ping-pong 64 B, depth 1, both ends on CPU 0" "round trips/s" tls_pingpong_cpu0 "evpl" tls_pingpong_cpu0_nio "SwiftNIO + NIO-SSL"
    pair tls "TLS 1.3 ping-pong 64 B, depth 1, server CPU 0, client CPU 1" "round trips/s" tls_pingpong "evpl" tls_pingpong_nio "SwiftNIO + NIO-SSL"
    pair tls "TLS 1.3 full handshakes (a new connection each, ECDSA P-256), server CPU 0, client CPU 1" "connections/s" \
        tls_handshake "evpl" tls_handshake_nio "SwiftNIO + NIO-SSL"
    tls_certificate
fi
if chosen block || chosen async; then
    prepare_block_file
fi

PORT=21000
for run in $(seq "$RUNS"); do
    PORT=$((PORT + 50))
    for transport in tcp udp; do
        chosen $transport || continue
        PORT=$((PORT + 4))
        sample ${transport}_socket "$(evpl_pingpong $transport socket 0 0 1 $((PORT + 1)))"
        sample ${transport}_sockperf "$(sockperf_pingpong $transport 0 0 $((PORT + 2)))"
        sample ${transport}_io_uring "$(evpl_pingpong $transport io_uring 0 0 1 $((PORT + 3)))"
        sample ${transport}_nio "$(nio_pingpong $transport 0 0 1 $((PORT + 4)))"
    done
    if chosen deep; then
        sample deep_socket "$(evpl_pingpong tcp socket 0 1 16 $((PORT + 9)))"
        sample deep_nio "$(nio_pingpong tcp 0 1 16 $((PORT + 10)))"
        sample deep_io_uring "$(evpl_pingpong tcp io_uring 0 1 16 $((PORT + 11)))"
    fi
    if chosen connections; then
        offset=34
        for connections in 100 1000; do
            sample many_io_uring_$connections "$(evpl_connections io_uring $connections $((PORT + offset)))"
            sample many_socket_$connections "$(evpl_connections socket $connections $((PORT + offset + 1)))"
            sample many_nio_$connections "$(nio_connections $connections $((PORT + offset + 2)))"
            offset=$((offset + 3))
        done
    fi
    if chosen instructions; then
        sample cg_null_1 "$(evpl_blk_instructions "$CALLGRIND_COPY" null 1 callbacks)"
        sample cg_fio_null_1 "$(fio_blk_instructions null 1)"
        sample cg_null_32 "$(evpl_blk_instructions "$CALLGRIND_COPY" null 32 callbacks)"
        sample cg_fio_null_32 "$(fio_blk_instructions null 32)"
        sample cg_null_32_async "$(evpl_blk_instructions "$CALLGRIND_COPY" null 32 async)"
        sample cg_uring_1 "$(evpl_blk_instructions "$CALLGRIND_COPY" io_uring 1 callbacks)"
        sample cg_fio_uring_1 "$(fio_blk_instructions io_uring 1)"
    fi
    if chosen http; then
        offset=46
        for connections in 64 1 1000; do
            for server in evpl nginx hummingbird; do
                [ "$server" = hummingbird ] && [ "$connections" != 64 ] && continue
                read -r rps p50 p99 cpu <<<"$(http_bench $server $((PORT + offset)) $connections)"
                sample http_${server}_${connections}_rps "$rps"
                sample http_${server}_${connections}_cpu "$cpu"
                sample http_${server}_${connections}_p50 "$p50"
                sample http_${server}_${connections}_p99 "$p99"
                offset=$((offset + 1))
            done
        done
        for server in evpl nginx; do
            cat "$HTTP_ROOT/file.bin" >/dev/null
            read -r rps p50 p99 cpu <<<"$(http_bench $server $((PORT + offset)) 16 "$HTTP_ROOT" /file.bin)"
            sample http_${server}_file_gbps "$(awk -v rps="$rps" 'BEGIN { if (rps == "nan") print "nan"; else printf "%.2f", rps * 1048576 * 8 / 1e9 }')"
            sample http_${server}_file_cpu "$cpu"
            offset=$((offset + 1))
        done
    fi
    if chosen stream; then
        sample stream_socket "$(evpl_stream socket $((PORT + 12)))"
        sample stream_iperf3 "$(iperf3_stream $((PORT + 13)))"
        sample stream_io_uring "$(evpl_stream io_uring $((PORT + 14)))"
        sample stream_nio "$(nio_stream $((PORT + 15)))"
    fi
    if chosen hybrid; then
        offset=40
        for depth in 1 16; do
            sample hybrid_adaptive_$depth "$(evpl_pingpong tcp auto 0 1 $depth $((PORT + offset)) adaptive)"
            sample hybrid_fixed_$depth "$(evpl_pingpong tcp auto 0 1 $depth $((PORT + offset + 1)) fixed)"
            sample hybrid_sleep_$depth "$(evpl_pingpong tcp auto 0 1 $depth $((PORT + offset + 2)) sleep)"
            offset=$((offset + 3))
        done
    fi
    if chosen scaling; then
        sample scaling_1 "$(evpl_scaling 1 $((PORT + 18)))"
        sample scaling_2 "$(evpl_scaling 2 $((PORT + 19)))"
    fi
    if chosen block; then
        cat "$BLOCK_FILE" >/dev/null  # DAMON reclaim on these VMs evicts idle page cache
        for config in "${BLOCK_CONFIGS[@]}"; do
            set -- $config
            sample "blk_evpl_$1_$2_$3" "$(evpl_blk "$1" "$2" "$3")"
            sample "blk_fio_$1_$2_$3" "$(fio_blk "$1" "$2" "$3")"
        done
        sample blk_evpl_null "$(evpl_blk null 1 0)"
        sample blk_fio_null "$(fio_blk null 1 0)"
    fi
    if chosen async; then
        sample callbacks_d1 "$(evpl_api_pingpong callbacks 0 0 1 $((PORT + 20)))"
        sample async_d1 "$(evpl_api_pingpong async 0 0 1 $((PORT + 21)))"
        sample nio_async_d1 "$(nio_async_pingpong 0 0 1 $((PORT + 22)))"
        sample callbacks_d16 "$(evpl_api_pingpong callbacks 0 1 16 $((PORT + 23)))"
        sample async_d16 "$(evpl_api_pingpong async 0 1 16 $((PORT + 24)))"
        sample nio_async_d16 "$(nio_async_pingpong 0 1 16 $((PORT + 25)))"
        cat "$BLOCK_FILE" >/dev/null
        sample blk_callbacks "$(evpl_blk io_uring 32 0 callbacks)"
        sample blk_async "$(evpl_blk io_uring 32 0 async)"
        sample blk_stream "$(evpl_blk io_uring 32 0 async-stream)"
        sample blk_null_callbacks "$(evpl_blk null 32 0 callbacks)"
        sample blk_null_async "$(evpl_blk null 32 0 async)"
    fi
    if chosen tls; then
        sample tls_stream "$(evpl_tls stream 131072 0 1 $((PORT + 26)))"
        sample tls_stream_nio "$(nio_tls stream 131072 0 1 $((PORT + 27)))"
        sample tls_cipher "$(openssl_gcm)"
        sample tls_pingpong_cpu0 "$(evpl_tls pingpong 64 0 0 $((PORT + 32)))"
        sample tls_pingpong_cpu0_nio "$(nio_tls pingpong 64 0 0 $((PORT + 33)))"
        sample tls_pingpong "$(evpl_tls pingpong 64 0 1 $((PORT + 28)))"
        sample tls_pingpong_nio "$(nio_tls pingpong 64 0 1 $((PORT + 29)))"
        sample tls_handshake "$(evpl_tls handshake 64 0 1 $((PORT + 30)))"
        sample tls_handshake_nio "$(nio_tls handshake 64 0 1 $((PORT + 31)))"
    fi
    echo "run $run of $RUNS done" >&2
done

python3 -c 'import matplotlib' 2>/dev/null || pip install --quiet matplotlib >&2 || echo "matplotlib unavailable: no chart" >&2
python3 Benchmarks/report.py --samples "$SAMPLES" --pairs "$PAIRS" --runs "$RUNS" --seconds "$SECS" \
    --command "$INVOCATION" --out "$RESULTS" --name "$NAME"
if chosen hybrid; then
    # Open-loop rows: server CPU and latency from the schedule, per wait policy.
    PACED_LOADS=""
    for rate in 1000 5000 20000 100000; do
        for connections in 1 64; do
            for arrivals in fixed poisson; do PACED_LOADS+=" $rate:$connections:$arrivals"; done
        done
    done
    {
        printf '\n## Paced load per wait policy (`Benchmarks/paced.sh`, medians of %s runs of %s s)\n\n' "$RUNS" "$SECS"
        Benchmarks/paced.sh --runs "$RUNS" --seconds "$SECS" --loads "$PACED_LOADS"
    } >>"$RESULTS/$NAME.md"
    echo "appended the paced rows to $RESULTS/$NAME.md" >&2
fi
