#!/usr/bin/env bash
# Installs the Debian packages swift-evpl needs, when any is missing, and
# does nothing otherwise (a second run costs a few stat calls).
#
#   liburing-dev   the io_uring backend and block engine link liburing
#                  (found through pkg-config).
#   libaio-dev     the libaio block engine.
#   libssl-dev     TLS (OpenSSL's libssl and libcrypto, found through
#                  pkg-config).
#   openssl        the command-line tool the TLS tests talk to and make
#                  their certificates with.
#   pkg-config     how SwiftPM finds liburing.
#   iproute2       the network fault tests build hosts in network
#                  namespaces (`ip netns`, veth pairs) and rate-limit with tc.
#   nftables       those tests drop and reset traffic between the hosts.
#   curl, python3, wrk, nginx-light
#                  the HTTP tests' real peers: curl and Python's http.client
#                  and urllib as clients, wrk as a load generator, Python's
#                  http.server and nginx as servers for the client.
#
# Run it as root, or as a user who may use sudo.
#
#   Scripts/bootstrap.sh
set -euo pipefail

missing=()
pkg-config --exists liburing 2>/dev/null || missing+=(liburing-dev)
[ -f /usr/include/libaio.h ] || missing+=(libaio-dev)
pkg-config --exists openssl 2>/dev/null || missing+=(libssl-dev)
command -v openssl >/dev/null || missing+=(openssl)
command -v pkg-config >/dev/null || missing+=(pkg-config)
{ command -v ip >/dev/null && command -v tc >/dev/null; } || missing+=(iproute2)
command -v nft >/dev/null || missing+=(nftables)
command -v curl >/dev/null || missing+=(curl)
command -v python3 >/dev/null || missing+=(python3)
command -v wrk >/dev/null || missing+=(wrk)
[ -x /usr/sbin/nginx ] || missing+=(nginx-light)
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -eq 0 ]; then
    run=()
elif command -v sudo >/dev/null; then
    run=(sudo)
else
    echo "swift-evpl needs these Debian packages: ${missing[*]}" >&2
    echo "install them as root: apt-get install -y ${missing[*]}" >&2
    exit 1
fi
echo "installing ${missing[*]}" >&2
# Through env: sudo would drop an exported DEBIAN_FRONTEND, and debconf would ask questions.
"${run[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq
"${run[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
