#!/bin/sh
# deps.sh - install the Debian packages qrpc builds and tests with.
#
# Checks each package with dpkg; installs the missing ones with apt-get when
# run as root, and otherwise prints the exact apt-get line and fails.
# Usage: tools/deps.sh [--peers] [extra-package...]   (make calls it before
# building).  --peers adds what make bench-peers needs beyond the base set:
# gRPC C++ with protoc and its C++ plugin (the rpcgen peer needs only
# rpcsvc-proto and libtirpc-dev, which are in the base set).
set -u

peers=""
if [ "${1:-}" = "--peers" ]; then
    shift
    peers="g++ libgrpc++-dev protobuf-compiler protobuf-compiler-grpc"
fi

pkgs="gcc make clang flex bison pkg-config check libibverbs-dev librdmacm-dev \
libclang-rt-14-dev rpcsvc-proto libtirpc-dev man-db zookeeper libzookeeper-mt-dev \
$peers $*"

missing=""
for p in $pkgs; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed'; then
        missing="$missing $p"
    fi
done
[ -z "$missing" ] && exit 0

if ! command -v apt-get >/dev/null 2>&1; then
    echo "deps.sh: missing packages:$missing (not a Debian system: install them by hand)" >&2
    exit 1
fi
if [ "$(id -u)" != 0 ]; then
    echo "deps.sh: missing packages; run as root:" >&2
    echo "  apt-get install -y$missing" >&2
    exit 1
fi
echo "deps.sh: installing:$missing"
export DEBIAN_FRONTEND=noninteractive
if ! apt-get install -y -q $missing; then
    apt-get update -q && apt-get install -y -q $missing || {
        echo "deps.sh: apt-get failed for:$missing" >&2
        exit 1
    }
fi
