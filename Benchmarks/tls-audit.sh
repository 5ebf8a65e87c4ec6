#!/usr/bin/env bash
# What TLS scanners say of `evpl echo --tls` with its defaults: testssl.sh
# (Debian's testssl.sh) and sslyze (PyPI) against a server on loopback, with
# a throwaway ECDSA P-256 certificate. Prints every testssl line that says
# "VULNERABLE" or "potentially", sslyze's verdict on Mozilla's intermediate
# profile, and a one-line summary per scanner; the full reports land in
# Benchmarks/results/tls-audit-*.txt. Exits non-zero when either scanner
# finds a problem.
#
#   Benchmarks/tls-audit.sh [--profile intermediate|modern]
#
# Needs: apt-get install -y testssl.sh; pip install sslyze. Builds the
# release evpl first.
set -euo pipefail
cd "$(dirname "$0")/.."
PROFILE=intermediate
[ "${1:-}" = "--profile" ] && PROFILE=$2
command -v testssl >/dev/null || { echo "needs testssl (apt-get install -y testssl.sh)" >&2; exit 2; }
command -v sslyze >/dev/null || { echo "needs sslyze (pip install sslyze)" >&2; exit 2; }
swift build -c release --product evpl >/dev/null
EVPL=$(swift build -c release --show-bin-path)/evpl
WORK=$(mktemp -d)
trap 'kill $SERVER 2>/dev/null || true; rm -rf "$WORK"' EXIT
# A throwaway CA and a leaf it signs (scanners refuse a self-signed leaf as an end entity).
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -keyout "$WORK/ca-key.pem" -out "$WORK/ca.pem" \
    -days 2 -nodes -subj "/CN=evpl audit CA" -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -keyout "$WORK/key.pem" -out "$WORK/leaf.csr" -nodes -subj /CN=localhost 2>/dev/null
printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=serverAuth\n' >"$WORK/leaf.ext"
openssl x509 -req -in "$WORK/leaf.csr" -CA "$WORK/ca.pem" -CAkey "$WORK/ca-key.pem" -CAcreateserial -days 2 \
    -extfile "$WORK/leaf.ext" -out "$WORK/cert.pem" 2>/dev/null
"$EVPL" echo --tls --tls-cert "$WORK/cert.pem" --tls-key "$WORK/key.pem" --tls-profile "$PROFILE" --port 0 >"$WORK/listening" &
SERVER=$!
for _ in $(seq 100); do grep -q "listening on" "$WORK/listening" 2>/dev/null && break; sleep 0.05; done
PORT=$(sed -n 's/.*:\([0-9]*\)$/\1/p' "$WORK/listening")
mkdir -p Benchmarks/results
STATUS=0

testssl --quiet --color 0 --warnings off --sneaky "127.0.0.1:$PORT" >Benchmarks/results/tls-audit-testssl.txt 2>&1 || true
echo "== testssl.sh $(dpkg-query -W -f '${Version}' testssl.sh 2>/dev/null), profile $PROFILE"
if grep -E "VULNERABLE|potentially" Benchmarks/results/tls-audit-testssl.txt | grep -v "not vulnerable"; then
    STATUS=1
else
    echo "no line says VULNERABLE or potentially vulnerable"
fi
grep -E "^ *(SSLv2|SSLv3|TLS 1 |TLS 1.1|TLS 1.2|TLS 1.3) " Benchmarks/results/tls-audit-testssl.txt || true
grep -E "Elliptic curves offered|Has server cipher order|LUCKY13|ROBOT|SWEET32" Benchmarks/results/tls-audit-testssl.txt || true

echo "== sslyze $(pip show sslyze 2>/dev/null | sed -n 's/^Version: //p')"
# Trusting the throwaway CA leaves only the configuration to judge.
sslyze --mozilla_config="$PROFILE" --certinfo_ca_file "$WORK/ca.pem" "127.0.0.1:$PORT" >Benchmarks/results/tls-audit-sslyze.txt 2>&1 || true
if grep -q "OK - Compliant" Benchmarks/results/tls-audit-sslyze.txt; then
    grep -B2 "OK - Compliant" Benchmarks/results/tls-audit-sslyze.txt | grep -v "^ *$"
else
    sed -n '/COMPLIANCE AGAINST MOZILLA/,$p' Benchmarks/results/tls-audit-sslyze.txt
    STATUS=1
fi
exit $STATUS
