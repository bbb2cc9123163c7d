#!/bin/sh
# demo.sh - the calc example across two processes: starts calc-server on
# 127.0.0.1 (any free port), reads the address it prints, runs calc-client
# against it, stops the server with SIGTERM and checks that it exited 0.
# Then the same for the kv example with a short kv-client session.
#
#   sh examples/demo.sh CALC_BUILD_DIR [KV_BUILD_DIR]
#
# Exits nonzero if anything failed.  Every wait is bounded; a server still
# running when the script exits, for whatever reason, is killed.

set -eu

calc_dir=${1:?usage: demo.sh CALC_BUILD_DIR [KV_BUILD_DIR]}
kv_dir=${2:-}
wait_s=10                       # bound on each wait

tmp=$(mktemp -d "${TMPDIR:-/tmp}/qrpc-demo.XXXXXX")
server_pid=
watchdog_pid=

cleanup() {
    status=$?
    trap - EXIT INT TERM
    if [ -n "$watchdog_pid" ]; then
        kill "$watchdog_pid" 2>/dev/null || true
    fi
    if [ -n "$server_pid" ]; then
        echo "demo: killing the server (pid $server_pid)" >&2
        kill -KILL "$server_pid" 2>/dev/null || true
        wait "$server_pid" 2>/dev/null || true
    fi
    rm -rf "$tmp"
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

fail() {
    echo "demo: FAILED: $*" >&2
    if [ -s "$tmp/server.err" ]; then
        echo "demo: the server's standard error:" >&2
        sed 's/^/    /' "$tmp/server.err" >&2
    fi
    exit 1
}

# start_server PROGRAM: runs it in the background on 127.0.0.1:0 and sets
# $addr from its "listening on ADDR" line, polling its output file for
# about $wait_s seconds at most.
start_server() {
    : >"$tmp/server.out"
    : >"$tmp/server.err"
    "$1" 127.0.0.1:0 >"$tmp/server.out" 2>"$tmp/server.err" &
    server_pid=$!
    echo "demo: started $(basename "$1") (pid $server_pid)"
    addr=
    deadline=$(($(date +%s) + wait_s))
    while [ "$(date +%s)" -le "$deadline" ]; do
        # a whole line only: it ends in a newline
        if [ "$(wc -l <"$tmp/server.out")" -ge 1 ]; then
            line=$(sed -n 1p "$tmp/server.out")
            case $line in
            "listening on "*) addr=${line#listening on }; break ;;
            *) fail "unexpected first line from the server: '$line'" ;;
            esac
        fi
        if ! kill -0 "$server_pid" 2>/dev/null; then
            break
        fi
        sleep 0.05 2>/dev/null || sleep 1      # fractional sleep is not POSIX
    done
    if [ -z "$addr" ]; then
        if ! kill -0 "$server_pid" 2>/dev/null; then
            st=0
            wait "$server_pid" || st=$?
            server_pid=
            fail "the server exited (status $st) before printing its address"
        fi
        fail "the server printed no address within ${wait_s}s"
    fi
    echo "demo: the server listens on $addr"
}

# stop_server: SIGTERM, then wait for it at most $wait_s seconds (a
# watchdog kills it after that); it must exit 0.
stop_server() {
    pid=$server_pid
    kill -TERM "$pid" 2>/dev/null || fail "the server (pid $pid) is gone already"
    (
        trap 'kill "$sleeper" 2>/dev/null; exit 0' TERM
        sleep "$wait_s" &
        sleeper=$!
        wait "$sleeper"
        kill -KILL "$pid" 2>/dev/null
    ) &
    watchdog_pid=$!
    st=0
    wait "$pid" || st=$?
    server_pid=
    kill "$watchdog_pid" 2>/dev/null || true
    wait "$watchdog_pid" 2>/dev/null || true
    watchdog_pid=
    if [ -s "$tmp/server.err" ]; then
        sed 's/^/demo: server says: /' "$tmp/server.err"
    fi
    [ "$st" -eq 0 ] || fail "the server exited with status $st after SIGTERM"
    echo "demo: the server stopped cleanly"
}

# ---- calc ----------------------------------------------------------------
start_server "$calc_dir/calc-server"
echo "demo: running calc-client $addr"
if ! "$calc_dir/calc-client" "$addr"; then
    fail "calc-client $addr"
fi
# a second client sees the total the first one left
if ! "$calc_dir/calc-client" "$addr" >"$tmp/client2.out"; then
    fail "the second calc-client $addr"
fi
grep -q '^incrementBy(10) = 70$' "$tmp/client2.out" ||
    fail "the second client did not continue the server's total: $(cat "$tmp/client2.out")"
echo "demo: a second client continued the server's running total (70, 90, 120)"
stop_server

# ---- kv ------------------------------------------------------------------
if [ -n "$kv_dir" ]; then
    start_server "$kv_dir/kv-server"
    # kv ARGS...: runs kv-client, its output in $tmp/kv.out (and shown)
    kv() {
        echo "demo: kv-client $addr $*"
        kv_st=0
        "$kv_dir/kv-client" "$addr" "$@" >"$tmp/kv.out" || kv_st=$?
        sed 's/^/    /' "$tmp/kv.out"
        return "$kv_st"
    }
    kv put greeting "hello, world" || fail "kv put"
    kv put answer 42 || fail "kv put"
    kv get greeting || fail "kv get"
    [ "$(cat "$tmp/kv.out")" = "hello, world" ] || fail "kv get returned '$(cat "$tmp/kv.out")'"
    kv keys || fail "kv keys"
    [ "$(tr '\n' ' ' <"$tmp/kv.out")" = "answer greeting " ] ||
        fail "kv keys returned '$(cat "$tmp/kv.out")'"
    kv delete answer || fail "kv delete"
    st=0
    kv get answer 2>"$tmp/kv.err" || st=$?
    [ "$st" -eq 3 ] || fail "kv get of a deleted key exited $st, not 3"
    echo "demo: (exit status 3: $(cat "$tmp/kv.err"))"
    stop_server
fi

echo "demo: everything worked"
