# Measurement functions for Benchmarks/run.sh (source it). Each prints one
# number. Each takes its port as an argument: the functions run in command
# substitutions (subshells), so they cannot advance a shared counter.
# SECS (seconds per measurement) must be set.

EVPL=${EVPL:-.build/release/evpl}
NIO_PERF=${NIO_PERF:-Benchmarks/NIOPeer/.build/release/nio-perf}
BLOCK_FILE=${BLOCK_FILE:-/var/tmp/evpl-bench-1g.img}

wait_listening() { for _ in $(seq 100); do grep -q "listening on" "$1" 2>/dev/null && return; sleep 0.05; done; }
json_field() { sed -nE "s/.*\"$1\":([0-9.e+-]+).*/\1/p"; }
stop_server() { kill "$1" 2>/dev/null; wait "$1" 2>/dev/null || true; }
# median: the median of the numbers on standard input, one a line.
median() { sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }

# evpl_pingpong TRANSPORT BACKEND SERVER_CPU CLIENT_CPU DEPTH PORT [WAIT_POLICY] -> round trips/s
# WAIT_POLICY, when given, sets EVPL_WAIT_POLICY on both ends (adaptive, fixed or sleep).
evpl_pingpong() {
    local log; log=$(mktemp)
    local policy=(); [ -n "${7:-}" ] && policy=(env EVPL_WAIT_POLICY="$7")
    "${policy[@]}" taskset -c "$3" "$EVPL" perf server --protocol "$1" --backend "$2" --port "$6" >"$log" & local pid=$!
    wait_listening "$log"
    "${policy[@]}" taskset -c "$4" "$EVPL" perf client --protocol "$1" --backend "$2" --port "$6" --size 64 --depth "$5" --duration "$SECS" --json | json_field ops_per_sec
    stop_server $pid; rm -f "$log"
}

# evpl_connections BACKEND CONNECTIONS PORT -> round trips/s of TCP 64 B ping-pong at depth 1 over
# CONNECTIONS connections, server on CPU 0, client on CPU 1, both on BACKEND
evpl_connections() {
    local log; log=$(mktemp)
    taskset -c 0 "$EVPL" perf server --backend "$1" --port "$3" >"$log" & local pid=$!
    wait_listening "$log"
    taskset -c 1 "$EVPL" perf client --backend "$1" --port "$3" --connections "$2" --size 64 --depth 1 --duration "$SECS" --json | json_field ops_per_sec
    stop_server $pid; rm -f "$log"
}

# nio_connections CONNECTIONS PORT -> the same between a SwiftNIO client and server
nio_connections() {
    local log; log=$(mktemp)
    taskset -c 0 "$NIO_PERF" server --port "$2" >"$log" & local pid=$!
    wait_listening "$log"
    taskset -c 1 "$NIO_PERF" client --port "$2" --connections "$1" --size 64 --depth 1 --duration "$SECS" | json_field ops_per_sec
    stop_server $pid; rm -f "$log"
}

# evpl_api_pingpong API SERVER_CPU CLIENT_CPU DEPTH PORT -> round trips/s over TCP (auto backend),
# both ends through the callback or the async API
evpl_api_pingpong() {
    local log; log=$(mktemp)
    taskset -c "$2" "$EVPL" perf server --api "$1" --port "$5" >"$log" & local pid=$!
    wait_listening "$log"
    taskset -c "$3" "$EVPL" perf client --api "$1" --port "$5" --size 64 --depth "$4" --duration "$SECS" --json | json_field ops_per_sec
    stop_server $pid; rm -f "$log"
}

# nio_async_pingpong SERVER_CPU CLIENT_CPU DEPTH PORT -> round trips/s, both ends through NIOAsyncChannel
nio_async_pingpong() {
    local log; log=$(mktemp)
    taskset -c "$1" "$NIO_PERF" server --async --port "$4" >"$log" & local pid=$!
    wait_listening "$log"
    taskset -c "$2" "$NIO_PERF" client --async --port "$4" --size 64 --depth "$3" --duration "$SECS" | json_field ops_per_sec
    stop_server $pid; rm -f "$log"
}

# evpl_scaling THREADS PORT -> round trips/s with THREADS server and client loops, one connection each, depth 16
evpl_scaling() {
    local log; log=$(mktemp)
    "$EVPL" perf server --threads "$1" --port "$2" >"$log" & local pid=$!
    wait_listening "$log"
    "$EVPL" perf client --threads "$1" --connections "$1" --port "$2" --size 64 --depth 16 --duration "$SECS" --json | json_field ops_per_sec
    stop_server $pid; rm -f "$log"
}

# evpl_stream BACKEND PORT -> Gbit/s (128 KiB messages, unpinned)
evpl_stream() {
    local log; log=$(mktemp)
    "$EVPL" perf server --backend "$1" --port "$2" >"$log" & local pid=$!
    wait_listening "$log"
    "$EVPL" perf client --backend "$1" --port "$2" --mode stream --size 131072 --duration "$SECS" --json |
        json_field bytes_per_sec | awk '{printf "%.2f\n", $1 * 8 / 1e9}'
    stop_server $pid; rm -f "$log"
}

# nio_pingpong TRANSPORT SERVER_CPU CLIENT_CPU DEPTH PORT -> round trips/s
nio_pingpong() {
    local log; log=$(mktemp)
    local udp=(); [ "$1" = udp ] && udp=(--udp)
    taskset -c "$2" "$NIO_PERF" server "${udp[@]}" --port "$5" >"$log" & local pid=$!
    wait_listening "$log"
    taskset -c "$3" "$NIO_PERF" client "${udp[@]}" --port "$5" --size 64 --depth "$4" --duration "$SECS" | json_field ops_per_sec
    stop_server $pid; rm -f "$log"
}

# nio_stream PORT -> Gbit/s (128 KiB writes, unpinned)
nio_stream() {
    local log; log=$(mktemp)
    "$NIO_PERF" server --port "$1" >"$log" & local pid=$!
    wait_listening "$log"
    "$NIO_PERF" client --port "$1" --mode stream --size 131072 --duration "$SECS" |
        json_field bytes_per_sec | awk '{printf "%.2f\n", $1 * 8 / 1e9}'
    stop_server $pid; rm -f "$log"
}

# TLS_DIR holds tls_certificate's output for the tls_* functions.
TLS_DIR=${TLS_DIR:-/tmp/evpl-bench-tls}

# tls_certificate: a throwaway ECDSA P-256 certificate for localhost (its own CA) in TLS_DIR.
tls_certificate() {
    mkdir -p "$TLS_DIR"
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 -subj /CN=localhost \
        -addext subjectAltName=DNS:localhost -keyout "$TLS_DIR/key.pem" -out "$TLS_DIR/cert.pem" 2>/dev/null
}

# tls_figure MODE: the JSON field a TLS run reports in (Gbit/s for a stream, operations/s otherwise).
tls_figure() {
    if [ "$1" = stream ]; then json_field bytes_per_sec | awk '{printf "%.2f\n", $1 * 8 / 1e9}'; else json_field ops_per_sec; fi
}

# evpl_tls MODE SIZE SERVER_CPU CLIENT_CPU PORT -> TLS 1.3 figure of `evpl perf --mode MODE`
# The server sends no session tickets, as NIO-SSL's server does: neither client resumes.
evpl_tls() {
    local log; log=$(mktemp)
    taskset -c "$3" "$EVPL" perf server --port "$5" --tls --tls-cert "$TLS_DIR/cert.pem" --tls-key "$TLS_DIR/key.pem" --tls-tickets 0 >"$log" & local pid=$!
    wait_listening "$log"
    taskset -c "$4" "$EVPL" perf client --port "$5" --mode "$1" --size "$2" --duration "$SECS" --json \
        --tls --tls-ca "$TLS_DIR/cert.pem" --tls-verify-host localhost | tls_figure "$1"
    stop_server $pid; rm -f "$log"
}

# nio_tls MODE SIZE SERVER_CPU CLIENT_CPU PORT -> the same through SwiftNIO and NIO-SSL
nio_tls() {
    local log; log=$(mktemp)
    taskset -c "$3" "$NIO_PERF" server --port "$5" --tls --tls-cert "$TLS_DIR/cert.pem" --tls-key "$TLS_DIR/key.pem" >"$log" & local pid=$!
    wait_listening "$log"
    taskset -c "$4" "$NIO_PERF" client --port "$5" --mode "$1" --size "$2" --duration "$SECS" \
        --tls --tls-ca "$TLS_DIR/cert.pem" --tls-verify-host localhost | tls_figure "$1"
    stop_server $pid; rm -f "$log"
}

# openssl_gcm -> Gbit/s of AES-128-GCM alone on one core (16 KiB blocks), the TLS stream's ceiling
openssl_gcm() {
    taskset -c 1 openssl speed -seconds "$SECS" -bytes 16384 -evp aes-128-gcm 2>/dev/null |
        awk '/^AES-128-GCM/ { sub(/k$/, "", $2); printf "%.2f\n", $2 * 1000 * 8 / 1e9 }'
}

# sockperf_pingpong TRANSPORT SERVER_CPU CLIENT_CPU PORT -> round trips/s (sockperf prints one-way latency)
sockperf_pingpong() {
    local tcp=(); [ "$1" = tcp ] && tcp=(--tcp)
    taskset -c "$2" sockperf server "${tcp[@]}" -i 127.0.0.1 -p "$4" >/dev/null 2>&1 & local pid=$!
    sleep 0.5
    taskset -c "$3" sockperf ping-pong "${tcp[@]}" -i 127.0.0.1 -p "$4" -m 64 -t "$SECS" 2>&1 |
        sed -nE 's/.*Summary: Latency is ([0-9.]+) usec.*/\1/p' | awk '{printf "%.1f\n", 1e6 / (2 * $1)}'
    stop_server $pid
}

# iperf3_stream PORT -> Gbit/s
iperf3_stream() {
    # -1: one test, then exit; the timeout covers a client that never connects.
    timeout $((SECS + 20)) iperf3 -s -p "$1" -1 >/dev/null 2>&1 & local pid=$!
    sleep 0.5
    iperf3 -c 127.0.0.1 -p "$1" -t "$SECS" -J | python3 -c 'import json,sys; print("%.2f" % (json.load(sys.stdin)["end"]["sum_received"]["bits_per_second"] / 1e9))'
    wait $pid 2>/dev/null || true
}

# evpl_blk ENGINE DEPTH DIRECT(0/1) [API] -> IOPS of 4 KiB random reads over BLOCK_FILE
evpl_blk() {
    local direct=(); [ "$3" = 1 ] && direct=(--direct)
    "$EVPL" blk --path "$BLOCK_FILE" --rw randread --bs 4096 --iodepth "$2" --size 1073741824 --runtime "$SECS" --time-based --engine "$1" "${direct[@]}" --api "${4:-callbacks}" --json |
        json_field iops
}

# fio_blk ENGINE DEPTH DIRECT(0/1) -> IOPS of the same job (page cache kept: --invalidate=0)
fio_blk() {
    fio --name=r --filename="$BLOCK_FILE" --size=1g --rw=randread --bs=4k --ioengine="$1" --iodepth="$2" --direct="$3" \
        --runtime="$SECS" --time_based --invalidate=0 --output-format=json 2>/dev/null |
        python3 -c 'import json,sys; text=sys.stdin.read(); print("%.1f" % json.loads(text[text.index("{"):])["jobs"][0]["read"]["iops"])'
}

# prepare_block_file: a real 1 GiB of data (not a hole), read once into the page cache.
prepare_block_file() {
    if [ "$(stat -c %s "$BLOCK_FILE" 2>/dev/null || echo 0)" != "1073741824" ]; then
        "$EVPL" blk --path "$BLOCK_FILE" --rw write --bs 1048576 --iodepth 8 --size 1073741824 --runtime 600 --engine io_uring --verify >/dev/null  # ends after 1 GiB
    fi
    cat "$BLOCK_FILE" >/dev/null
}

# CALLGRIND_FILE: the 256 MiB file the instruction counts read (made by callgrind_file).
CALLGRIND_FILE=${CALLGRIND_FILE:-/var/tmp/evpl-cg.img}
CALLGRIND_SIZE=268435456

# callgrind_file: CALLGRIND_FILE holding real data, in the page cache.
callgrind_file() {
    if [ "$(stat -c %s "$CALLGRIND_FILE" 2>/dev/null || echo 0)" != "$CALLGRIND_SIZE" ]; then
        "$EVPL" blk --path "$CALLGRIND_FILE" --rw write --bs 1048576 --iodepth 8 --size "$CALLGRIND_SIZE" --runtime 600 --engine io_uring >/dev/null
    fi
    cat "$CALLGRIND_FILE" >/dev/null
}

# evpl_blk_instructions BINARY ENGINE DEPTH API -> instructions per 4 KiB random read of `evpl blk`
# under callgrind (BINARY a copy stripped with `strip -g`): two runs that end after 8,192 and
# 65,536 I/Os, subtracted, so that start-up and tear-down cancel out.
evpl_blk_instructions() {
    local out; out=$(mktemp)
    local counts=()
    for size in $((CALLGRIND_SIZE / 8)) "$CALLGRIND_SIZE"; do
        local json
        json=$(EVPL_SPIN_NS=0 valgrind --tool=callgrind --callgrind-out-file="$out" "$1" blk --path "$CALLGRIND_FILE" \
            --rw randread --bs 4096 --iodepth "$3" --size "$size" --runtime 600 --engine "$2" --api "$4" --json 2>/dev/null)
        counts+=("$(awk '/^summary:/ { print $2 }' "$out") $(echo "$json" | json_field operations)")
    done
    rm -f "$out"
    instructions_per_operation "${counts[@]}"
}

# fio_blk_instructions ENGINE DEPTH -> the same for fio's job (threads, so that callgrind sees the I/O)
fio_blk_instructions() {
    local out; out=$(mktemp)
    local counts=()
    for ios in 8192 65536; do
        local operations
        operations=$(valgrind --tool=callgrind --callgrind-out-file="$out" fio --thread --name=r --filename="$CALLGRIND_FILE" \
            --size=256m --rw=randread --bs=4k --ioengine="$1" --iodepth="$2" --number_ios="$ios" --invalidate=0 \
            --output-format=json 2>/dev/null | python3 -c 'import json,sys; text=sys.stdin.read(); print(json.loads(text[text.index("{"):])["jobs"][0]["read"]["total_ios"])')
        counts+=("$(awk '/^summary:/ { print $2 }' "$out") $operations")
    done
    rm -f "$out"
    instructions_per_operation "${counts[@]}"
}

# instructions_per_operation "I1 N1" "I2 N2" -> (I2 - I1) / (N2 - N1), rounded
instructions_per_operation() {
    python3 -c 'import sys; (i1, n1), (i2, n2) = [map(int, a.split()) for a in sys.argv[1:3]]; print(round((i2 - i1) / (n2 - n1)))' "$1" "$2"
}

HUMMINGBIRD=${HUMMINGBIRD:-Benchmarks/HummingbirdPeer/.build/release/hummingbird-hello}

# wait_http PORT: until GET http://127.0.0.1:PORT/ answers 200 (at most 5 s).
wait_http() { for _ in $(seq 100); do curl -sf -o /dev/null "http://127.0.0.1:$1/" && return; sleep 0.05; done; }

# process_ticks PID -> the CPU time (user + system, clock ticks) of PID and its children.
process_ticks() {
    local total=0 pid fields
    for pid in "$1" $(pgrep -P "$1"); do
        read -r -a fields <"/proc/$pid/stat" 2>/dev/null || continue
        total=$((total + fields[13] + fields[14]))
    done
    echo "$total"
}

# http_bench SERVER PORT CONNECTIONS -> "requests/s p50_us p99_us cpu_us": SERVER (evpl, nginx
# or hummingbird) answers GET / with "hello world" on CPU 0 (one worker, one event loop), and
# wrk -t1 -cCONNECTIONS on CPU 1 loads it for SECS over keep-alive connections; cpu_us is the
# server's CPU time per request (user + system, its worker included). "nan" when wrk saw an
# error or a non-2xx answer. With ROOT and PATH, evpl and nginx serve the files under ROOT instead
# (evpl through its block engine, nginx with sendfile on) and wrk asks for PATH.
http_bench() {
    local dir; dir=$(mktemp -d)
    local location='default_type text/plain; return 200 "hello world";' root_option=() path=/
    if [ -n "${4:-}" ]; then
        location="root $4; sendfile on; tcp_nopush on;"
        root_option=(--root "$4")
        path=$5
    fi
    case $1 in
        evpl) taskset -c 0 "$EVPL" http serve --port "$2" "${root_option[@]}" >"$dir/log" 2>&1 & ;;
        hummingbird) taskset -c 0 "$HUMMINGBIRD" "$2" >"$dir/log" 2>&1 & ;;
        nginx)
            cat >"$dir/nginx.conf" <<CONF
worker_processes 1;
worker_rlimit_nofile 8192;
daemon off;
pid $dir/nginx.pid;
error_log $dir/error.log;
events { worker_connections 4096; }
http {
    access_log off;
    keepalive_requests 100000000;
    server {
        listen 127.0.0.1:$2;
        location / { $location }
    }
}
CONF
            taskset -c 0 nginx -c "$dir/nginx.conf" -p "$dir" >"$dir/log" 2>&1 & ;;
    esac
    local pid=$!
    wait_http "$2"
    local before; before=$(process_ticks $pid)
    taskset -c 1 wrk -t1 -c"$3" -d"${SECS}s" --latency "http://127.0.0.1:$2$path" >"$dir/wrk"
    local ticks=$(( $(process_ticks $pid) - before ))
    awk -v ticks="$ticks" -v hz="$(getconf CLK_TCK)" -v secs="$SECS" '
        function us(v) { if (v ~ /us$/) return v + 0; if (v ~ /ms$/) return v * 1000; if (v ~ /s$/) return v * 1000000; return v }
        /Requests\/sec:/ { rps = $2 }
        $1 == "50%" { p50 = us($2) }
        $1 == "99%" { p99 = us($2) }
        /Non-2xx|Socket errors/ { bad = 1 }
        END { if (bad || rps == "") print "nan nan nan nan"; else print rps, p50, p99, ticks / hz * 1e6 / (rps * secs) }' "$dir/wrk"
    stop_server $pid; rm -rf "$dir"
}
