#!/usr/bin/env bash
# Load runs, by hand (not in CI): one forward client/server pair of linksocks-cli (release)
#   1. holds HELD tunnelled TCP connections at once, each checked with an echo before and
#      after, and reports resident memory per held connection on each side;
#   2. (fresh processes) makes CHURN short connections one after another and compares open
#      descriptors and resident memory at the end with those after a warm-up.
#
#   benches/load/run.sh                    # HELD=10000 CHURN=100000, a few minutes
#   HELD=2000 CHURN=10000 benches/load/run.sh
#
# Environment:
#   HELD=n        connections held at once (default 10000)
#   CHURN=n       short connections one after another (default 100000)
#   RUNTIME=smol|async-std   executor of the binary (default smol; async-std builds into
#                 target/load-async-std, a build of its own: slow the first time)
#   SKIP_BUILD=1  use the binaries as they are
#   RESULTS=path  also append the summary there (markdown)
#
# Each held connection costs a descriptor in the generator, in each proxy and in the echo
# target, each a process of its own; the soft limit is raised to the hard one, which must
# allow HELD plus some room. Everything listens on 127.0.0.1 and is killed on exit.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$ROOT"
HELD=${HELD:-10000}
CHURN=${CHURN:-100000}
RUNTIME=${RUNTIME:-smol}

log() { echo "[load] $*" >&2; }

ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
if (($(ulimit -n) < HELD + 512)); then
    log "open-file limit $(ulimit -n) is too low for HELD=$HELD (needs $((HELD + 512))); raise the hard limit or lower HELD"
    exit 1
fi

case $RUNTIME in
smol)
    TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
    FEATURES=()
    ;;
async-std)
    # A target dir of its own, so the smol build others use is not replaced.
    TARGET_DIR=$ROOT/target/load-async-std
    FEATURES=(--no-default-features --features async-std)
    ;;
*)
    log "RUNTIME must be smol or async-std"
    exit 2
    ;;
esac
if [[ ${SKIP_BUILD:-0} != 1 ]]; then
    log "building linksocks-cli ($RUNTIME) and the generator (release)"
    CARGO_TARGET_DIR=$TARGET_DIR cargo build --release -q -p linksocks-cli "${FEATURES[@]}"
    cargo build --release -q -p linksocks-benches --bin e2e
fi
CLI=$TARGET_DIR/release/linksocks-cli
E2E=${CARGO_TARGET_DIR:-$ROOT/target}/release/e2e

TMP=$(mktemp -d -t linksocks-load.XXXXXX)
PIDS=()
cleanup() {
    local p
    for p in "${PIDS[@]}"; do
        kill "$p" 2>/dev/null || true
    done
    for p in "${PIDS[@]}"; do
        wait "$p" 2>/dev/null || true
    done
    rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

NOPROXY_ENV=(env -u http_proxy -u https_proxy -u all_proxy -u HTTP_PROXY -u HTTPS_PROXY -u ALL_PROXY -u RUST_LOG)
LAST_PID=
start() {
    local name=$1
    shift
    "${NOPROXY_ENV[@]}" "$@" >"$TMP/$name.log" 2>&1 &
    LAST_PID=$!
    PIDS+=("$LAST_PID")
}
port() { "$E2E" free-port; }
wait_port() {
    if ! "$E2E" wait-port "127.0.0.1:$1" 30; then
        log "port $1 did not open; logs:"
        tail -n 20 "$TMP"/*.log >&2 || true
        exit 1
    fi
}

EP=$(port)
start echo "$E2E" echo-server --listen "127.0.0.1:$EP"
wait_port "$EP"

# up NAME: a fresh server and forward client; sets SOCKS and PAIR_PIDS (client first: the
# local side, then the exit side) and remembers both to stop them with `down`.
up() {
    local wp sp spid
    wp=$(port)
    sp=$(port)
    start "$1-server" "$CLI" server -t load-token -H 127.0.0.1 -P "$wp"
    spid=$LAST_PID
    wait_port "$wp"
    start "$1-client" "$CLI" client -t load-token -u "ws://127.0.0.1:$wp" -p "$sp" -E
    wait_port "$sp"
    SOCKS=127.0.0.1:$sp
    PAIR_PIDS=$LAST_PID,$spid
}
down() {
    local p
    for p in ${PAIR_PIDS//,/ }; do
        kill "$p" 2>/dev/null || true
        wait "$p" 2>/dev/null || true
    done
}
# errors NAME: "no errors" unless the proxies logged warnings or errors.
errors() {
    local n
    n=$(cat "$TMP/$1"-server.log "$TMP/$1"-client.log | grep -c -E ' (WARN|ERROR) ' || true)
    if ((n > 0)); then
        echo "$n warning/error lines, first: $(grep -h -m1 -E ' (WARN|ERROR) ' "$TMP/$1"-server.log "$TMP/$1"-client.log)"
    else
        echo "none"
    fi
}

LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
log "held: $HELD connections (load average $LOAD_START)"
up held
"$E2E" run --socks "$SOCKS" --pids "$PAIR_PIDS" --label "held" --only held --held "$HELD" \
    --echo-target "127.0.0.1:$EP" --out "$TMP/held.tsv" 2>"$TMP/gen-held.log" ||
    { log "generator failed:"; tail -n 5 "$TMP/gen-held.log" >&2; exit 1; }
HELD_ERRORS=$(errors held)
down

LOAD_MID=$(cut -d' ' -f1-3 /proc/loadavg)
log "churn: $CHURN connections (load average $LOAD_MID)"
up churn
"$E2E" run --socks "$SOCKS" --pids "$PAIR_PIDS" --label "churn" --only churn --churn "$CHURN" \
    --echo-target "127.0.0.1:$EP" --out "$TMP/churn.tsv" 2>"$TMP/gen-churn.log" ||
    { log "generator failed:"; tail -n 5 "$TMP/gen-churn.log" >&2; exit 1; }
CHURN_ERRORS=$(errors churn)
down
LOAD_END=$(cut -d' ' -f1-3 /proc/loadavg)

v() { awk -F'\t' -v k="$2" '$1 == k { print $2 }' "$TMP/$1.tsv"; }
r1() { awk -v x="${1:-0}" 'BEGIN { printf "%.1f", x }'; }
or_none() { echo "${1:-none}"; }

REPORT=$(
    cat <<EOF
## Load run, $(date -u '+%Y-%m-%d %H:%M UTC')

\`benches/load/run.sh\`, linksocks-cli $("$CLI" version | cut -d' ' -f2-) (release), forward mode over ws://,
one client and one server process; $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//').
Load average (1, 5, 15 min): $LOAD_START at the start, $LOAD_MID between the runs, $LOAD_END at the end.

Held connections (target: under 16 KiB per idle tunnelled connection on each side, no errors):

| | client (SOCKS5 side) | server (exit side) |
|---|---|---|
| RSS before | $(v held held_base_rss_local_kib) KiB | $(v held held_base_rss_exit_kib) KiB |
| RSS with $(v held held_opened) held | $(v held held_rss_local_kib) KiB | $(v held held_rss_exit_kib) KiB |
| per held connection | $(r1 "$(v held held_kib_per_conn_local)") KiB | $(r1 "$(v held held_kib_per_conn_exit)") KiB |

Opened $(v held held_opened) of $(v held held_target) in $(r1 "$(v held held_open_secs)") s; still echoing after the
measurement: $(v held held_alive). First error: $(or_none "$(v held held_first_error)"). Warnings or errors
logged by the proxies: $HELD_ERRORS.

Short connections one after another (target: descriptors and RSS at the end equal those at the start, +-5 %):

| | client (SOCKS5 side) | server (exit side) |
|---|---|---|
| open descriptors after $(v churn churn_warmup) warm-up connections | $(v churn churn_fds_local_before) | $(v churn churn_fds_exit_before) |
| open descriptors after $(v churn churn_count) more | $(v churn churn_fds_local_after) | $(v churn churn_fds_exit_after) |
| RSS after the warm-up | $(v churn churn_rss_local_before_kib) KiB | $(v churn churn_rss_exit_before_kib) KiB |
| RSS at the end | $(v churn churn_rss_local_after_kib) KiB | $(v churn churn_rss_exit_after_kib) KiB |
| change | $(r1 "$(v churn churn_rss_local_change_pct)") % | $(r1 "$(v churn churn_rss_exit_change_pct)") % |

$(v churn churn_count) connections in $(r1 "$(v churn churn_secs)") s ($(r1 "$(v churn churn_per_sec)")/s), $(v churn churn_errors) errors
(first: $(or_none "$(v churn churn_first_error)")). Warnings or errors logged by the proxies: $CHURN_ERRORS.
EOF
)
echo "$REPORT"
if [[ -n ${RESULTS:-} ]]; then
    echo "$REPORT" >>"$RESULTS"
    log "appended to $RESULTS"
fi
