#!/usr/bin/env bash
# Builds every libFuzzer target (Sources/Fuzz*, FuzzSupport and FuzzHTTPSupport aside) with
# -sanitize=fuzzer,address and runs each for SECONDS (default 30), starting
# from its corpus in Corpus/<target> (new inputs go to a scratch folder, so
# the checked-in corpus stays small). A crash stops the script; its input is
# left in crashes/ and belongs in Corpus/<target> plus a regression test.
#
#   Fuzz/run.sh [SECONDS]
set -euo pipefail
cd "$(dirname "$0")"
seconds=${1:-30}
# A failed precondition is reported by libFuzzer; the Swift backtracer would
# only trip over AddressSanitizer reading the crashed process.
export SWIFT_BACKTRACE=enable=no
# lld: gold cannot link libFuzzer's runtime into Swift executables here.
swift build -Xswiftc -sanitize=fuzzer,address -Xswiftc -Xclang-linker -Xswiftc -fuse-ld=lld
mkdir -p crashes
for source in Sources/Fuzz*/; do
    target=$(basename "$source")
    [ "$target" = FuzzSupport ] || [ "$target" = FuzzHTTPSupport ] && continue
    scratch=$(mktemp -d)
    log=$(mktemp)
    echo "== $target, $seconds s"
    status=0
    ".build/debug/$target" -max_total_time="$seconds" -timeout=10 -artifact_prefix="crashes/$target-" \
        "$scratch" "Corpus/$target" >"$log" 2>&1 || status=$?
    grep -E "Done [0-9]+ runs|ERROR|Precondition failed|Fatal error" "$log" || true
    rm -rf "$scratch"
    if [ "$status" -ne 0 ]; then
        tail -40 "$log" >&2
        echo "$target failed (status $status); its input is in Fuzz/crashes/" >&2
        exit 1
    fi
    rm -f "$log"
done
