#!/usr/bin/env bash
# End-to-end benchmark of LinkSocks against the loopback limit, a chain of two plain relays,
# shadowsocks-rust (cipher none and aes-128-gcm) and the reference implementation.
#
#   benches/e2e/run.sh              # full run, a few minutes; writes benches/RESULTS.md
#   QUICK=1 benches/e2e/run.sh      # smoke run, under a minute; prints only (RESULTS=FILE to keep it)
#
# Environment:
#   SETUPS="direct relay ss-none ss-aes ours ours-rev ours-wss ref"   which columns to run
#   RESULTS=path          where to write the markdown (default benches/RESULTS.md; QUICK: none)
#   ROUNDS=n              rounds over all setups, the table shows medians (default 3; QUICK: 1)
#   SKIP_BUILD=1          use target/release/{linksocks-cli,e2e} as they are (no cargo build)
#   E2E_ARGS="..."        extra arguments for the generator (e.g. "--bytes 256MiB --held 5000")
#   LINKSOCKS_BENCH_CACHE cache directory (default ~/.cache/linksocks-bench): shadowsocks-rust
#                         is installed into $LINKSOCKS_BENCH_CACHE/ss on first use
#   SS_INSTALL=0          do not try to install shadowsocks-rust (its columns say why)
#   REF_LINKSOCKS=path    the reference launcher (default ../shared/tools/ref-linksocks)
#
# Everything listens on 127.0.0.1 only. Every process started here is killed on exit.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$ROOT"
QUICK=${QUICK:-0}
CACHE=${LINKSOCKS_BENCH_CACHE:-$HOME/.cache/linksocks-bench}
SS_ROOT=$CACHE/ss
REF=${REF_LINKSOCKS:-$ROOT/../shared/tools/ref-linksocks}
# The reference goes last in each round: its processes stay busy for a while after being
# measured (a 1.9 GB heap, a cleanup worker), which showed as latency outliers in whichever
# setup came next.
SETUPS=${SETUPS:-direct relay ss-none ss-aes ours ours-rev ours-wss ref}
if [[ $QUICK == 1 ]]; then
    RESULTS=${RESULTS:-}
    GEN_ARGS=(--quick)
    ROUNDS=${ROUNDS:-1}
else
    RESULTS=${RESULTS-$ROOT/benches/RESULTS.md}
    GEN_ARGS=(--bulk-secs 6 --rate-secs 2 --rate1-secs 1)
    ROUNDS=${ROUNDS:-3}
fi
# shellcheck disable=SC2206
GEN_ARGS+=(${E2E_ARGS:-})
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
BIN=$TARGET_DIR/release

TMP=$(mktemp -d -t linksocks-e2e.XXXXXX)
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

log() { echo "[e2e] $*" >&2; }

# Held connections need two descriptors each in the generator and in each proxy.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)

if [[ ${SKIP_BUILD:-0} == 1 ]]; then
    log "SKIP_BUILD=1: using the binaries in $BIN as they are"
else
    log "building linksocks-cli and the generator (release)"
    cargo build --release -q -p linksocks-cli
    cargo build --release -q -p linksocks-benches --bin e2e
fi
E2E=$BIN/e2e
CLI=$BIN/linksocks-cli

# The proxies must not pick up a proxy from the environment: everything stays on loopback.
NOPROXY_ENV=(env -u http_proxy -u https_proxy -u all_proxy -u HTTP_PROXY -u HTTPS_PROXY -u ALL_PROXY)

# start NAME CMD... : runs CMD in the background, logs to $TMP/NAME.log, sets LAST_PID.
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
    if ! "$E2E" wait-port "127.0.0.1:$1" "${2:-30}"; then
        log "port $1 did not open; logs:"
        tail -n 20 "$TMP"/*.log >&2 || true
        return 1
    fi
}

# A setup, once started: its label, SOCKS5 address, PIDs (local side first), description; or
# the reason it could not run.
declare -A LABEL SOCKS PIDSOF DESC NOTRUN
ORDER=()

# register NAME LABEL SOCKS PIDS DESCRIPTION
register() {
    ORDER+=("$1")
    LABEL[$1]=$2
    SOCKS[$1]=$3
    PIDSOF[$1]=$4
    DESC[$1]=$5
}

# not_run NAME LABEL REASON
not_run() {
    log "not run: $2: $3"
    ORDER+=("$1")
    LABEL[$1]=$2
    NOTRUN[$1]=$3
}

# ---- shadowsocks-rust ----
SS_ERR=
SS_VERSION=
ensure_ss() {
    [[ -n $SS_ERR || -n $SS_VERSION ]] && return 0
    if [[ ! -x $SS_ROOT/bin/sslocal || ! -x $SS_ROOT/bin/ssserver ]]; then
        if [[ ${SS_INSTALL:-1} == 0 ]]; then
            SS_ERR="not installed in $SS_ROOT and SS_INSTALL=0"
            return 0
        fi
        log "installing shadowsocks-rust into $SS_ROOT (first use; several minutes)"
        mkdir -p "$SS_ROOT"
        if ! cargo install shadowsocks-rust --locked --root "$SS_ROOT" >"$CACHE/ss-install.log" 2>&1; then
            SS_ERR="cargo install shadowsocks-rust failed: $(grep -m1 -E '^error' "$CACHE/ss-install.log" || tail -n 1 "$CACHE/ss-install.log")"
            return 0
        fi
    fi
    SS_VERSION=$("$SS_ROOT/bin/ssserver" --version 2>/dev/null | head -n 1 || echo "shadowsocks-rust")
}

# up_ss NAME LABEL METHOD
up_ss() {
    local name=$1 label=$2 method=$3
    ensure_ss
    if [[ -n $SS_ERR ]]; then
        not_run "$name" "$label" "$SS_ERR"
        return
    fi
    local sp lp spid
    sp=$(port)
    lp=$(port)
    start "$name-ssserver" "$SS_ROOT/bin/ssserver" -s "127.0.0.1:$sp" -m "$method" \
        -k bench-password -U --tcp-no-delay
    spid=$LAST_PID
    wait_port "$sp"
    start "$name-sslocal" "$SS_ROOT/bin/sslocal" -b "127.0.0.1:$lp" -s "127.0.0.1:$sp" \
        -m "$method" -k bench-password -U --tcp-no-delay
    wait_port "$lp"
    register "$name" "$label" "127.0.0.1:$lp" "$LAST_PID,$spid" \
        "$SS_VERSION, sslocal (SOCKS5, TCP+UDP) + ssserver, cipher $method, --tcp-no-delay"
}

# ---- the reference ----
up_ref() {
    local name=$1 label=$2 err=
    if [[ ! -x $REF ]]; then
        err="launcher $REF not found"
    elif ! timeout 600 "$REF" --help >"$TMP/ref-help.log" 2>&1; then
        err="launcher failed: $(tail -n 1 "$TMP/ref-help.log")"
    fi
    if [[ -n $err ]]; then
        not_run "$name" "$label" "$err"
        return
    fi
    local wp sp spid version
    version=$("$REF" version 2>/dev/null | grep -o -m1 '[0-9][0-9.]*[0-9]' | head -n 1 || echo '?')
    wp=$(port)
    sp=$(port)
    start ref-server "$REF" server -t bench-token -H 127.0.0.1 -P "$wp"
    spid=$LAST_PID
    wait_port "$wp"
    start ref-client "$REF" client -t bench-token -u "ws://127.0.0.1:$wp" -p "$sp"
    wait_port "$sp" 60
    register "$name" "$label" "127.0.0.1:$sp" "$LAST_PID,$spid" \
        "reference LinkSocks (Go, PyPI wheel linksocks $version), forward mode over ws://"
}

# ---- ours ----
# up_ours NAME LABEL MODE (ws|rev|wss)
up_ours() {
    local name=$1 label=$2 mode=$3
    local wp sp spid
    wp=$(port)
    sp=$(port)
    case $mode in
    ws)
        start "$name-server" "$CLI" server -t bench-token -H 127.0.0.1 -P "$wp"
        spid=$LAST_PID
        wait_port "$wp"
        start "$name-client" "$CLI" client -t bench-token -u "ws://127.0.0.1:$wp" -p "$sp" -E
        wait_port "$sp"
        register "$name" "$label" "127.0.0.1:$sp" "$LAST_PID,$spid" \
            "linksocks-cli client + server, forward mode over ws://"
        ;;
    rev)
        start "$name-server" "$CLI" server -t bench-token -H 127.0.0.1 -P "$wp" -r -p "$sp" -i
        spid=$LAST_PID
        wait_port "$wp"
        start "$name-provider" "$CLI" provider -t bench-token -u "ws://127.0.0.1:$wp" -E
        wait_port "$sp"
        # Reverse: the SOCKS5 port is on the server (local side), the provider dials (exit side).
        register "$name" "$label" "127.0.0.1:$sp" "$spid,$LAST_PID" \
            "linksocks-cli server -r (SOCKS5) + provider, reverse mode over ws://"
        ;;
    wss)
        if ! openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
            -keyout "$TMP/key.pem" -out "$TMP/cert.pem" -days 2 -subj /CN=127.0.0.1 \
            -addext subjectAltName=IP:127.0.0.1 >"$TMP/openssl.log" 2>&1; then
            not_run "$name" "$label" "openssl could not make a certificate: $(tail -n 1 "$TMP/openssl.log")"
            return
        fi
        start "$name-server" "$CLI" server -t bench-token -H 127.0.0.1 -P "$wp" \
            --tls-cert "$TMP/cert.pem" --tls-key "$TMP/key.pem"
        spid=$LAST_PID
        wait_port "$wp"
        start "$name-client" "$CLI" client -t bench-token -u "wss://127.0.0.1:$wp" -p "$sp" -E \
            --tls-insecure
        wait_port "$sp"
        register "$name" "$label" "127.0.0.1:$sp" "$LAST_PID,$spid" \
            "linksocks-cli client + server, forward mode over wss:// (self-signed P-256 certificate, --tls-insecure)"
        ;;
    esac
}

up_relay() {
    local name=$1 label=$2 fp bp bpid
    fp=$(port)
    bp=$(port)
    start relay-back "$E2E" relay-back --listen "127.0.0.1:$bp"
    bpid=$LAST_PID
    wait_port "$bp"
    start relay-front "$E2E" relay-front --listen "127.0.0.1:$fp" --back "127.0.0.1:$bp"
    wait_port "$fp"
    register "$name" "$label" "127.0.0.1:$fp" "$LAST_PID,$bpid" \
        "two plain relays (e2e relay-front, SOCKS5, + e2e relay-back), no framing: three loopback hops"
}

BASELINE="ss-rust none"
log "starting the proxies"
for s in $SETUPS; do
    case $s in
    direct) register direct "direct" direct "" "no proxy: the loopback limit" ;;
    relay) up_relay relay "2 plain relays" ;;
    ss-none) up_ss ss-none "ss-rust none" none ;;
    ss-aes) up_ss ss-aes "ss-rust aes-128-gcm" aes-128-gcm ;;
    ref) up_ref ref "reference (ws, fwd)" ;;
    ours) up_ours ours "ours ws fwd" ws ;;
    ours-rev) up_ours ours-rev "ours ws reverse" rev ;;
    ours-wss) up_ours ours-wss "ours wss fwd" wss ;;
    *) log "unknown setup $s" ;;
    esac
done

# Rounds: every setup is measured once per round, in turn, so that a change in the machine's
# load over the run falls on all of them alike; the table takes the median of the rounds.
# The held-connection test runs in the last round only (it leaves memory behind).
FILES=()
ROUND_LOADS=()
for ((r = 1; r <= ROUNDS; r++)); do
    ROUND_LOADS+=("$(cut -d' ' -f1 /proc/loadavg)")
    for name in "${ORDER[@]}"; do
        f=$TMP/r$r-$name.tsv
        FILES+=("$f")
        if [[ -n ${NOTRUN[$name]:-} ]]; then
            printf 'label\t%s\nerror\t%s\n' "${LABEL[$name]}" "${NOTRUN[$name]}" >"$f"
            continue
        fi
        held=()
        ((r < ROUNDS)) && held=(--held 0)
        t0=$SECONDS
        log "round $r/$ROUNDS: ${LABEL[$name]}"
        if ! "$E2E" run --socks "${SOCKS[$name]}" --pids "${PIDSOF[$name]}" \
            --label "${LABEL[$name]}" --description "${DESC[$name]}" --out "$f" \
            "${GEN_ARGS[@]}" "${held[@]}" 2>"$TMP/gen-r$r-$name.log"; then
            log "  generator failed:"
            tail -n 5 "$TMP/gen-r$r-$name.log" >&2
            printf 'label\t%s\nerror\tgenerator failed: %s\n' "${LABEL[$name]}" \
                "$(tail -n 1 "$TMP/gen-r$r-$name.log")" >"$f"
        fi
        log "  done in $((SECONDS - t0)) s"
    done
done

LOAD_END=$(cut -d' ' -f1-3 /proc/loadavg)
TABLE=$("$E2E" table --baseline "$BASELINE" "${FILES[@]}")
MODEL=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')
GEN_DESC=$([[ $QUICK == 1 ]] && echo "QUICK=1: e2e run --quick" || echo "e2e run ${GEN_ARGS[*]}")
GEN_DESC="$GEN_DESC; $ROUNDS round(s), medians"
[[ -n ${E2E_ARGS:-} ]] && GEN_DESC="$GEN_DESC, E2E_ARGS=\"$E2E_ARGS\""

REPORT=$(
    cat <<EOF
# End-to-end benchmark results

Run on $(date -u '+%Y-%m-%d %H:%M UTC') by \`benches/e2e/run.sh\` ($GEN_DESC).

Machine: $(nproc) cores, $MODEL, $(uname -sr), $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo) RAM;
$(rustc --version). Load average (1, 5, 15 min) at the start: $LOAD_START; at the end: $LOAD_END
1-minute load average when each round started: ${ROUND_LOADS[*]}
(the machine may be shared with other work: compare columns of one run, not runs).

Columns: each setup's proxy processes run on 127.0.0.1 with the generator (\`e2e run\`), which
runs its own targets. All setups are started first, then measured in turn, $ROUNDS round(s);
each figure is the median over the rounds (held connections: last round only). "local side"
is the process the application's SOCKS5 connection reaches, "exit side" the one that dials
the target. Ratios in parentheses are to **$BASELINE**
(value / baseline, whatever the direction of "better"). MB = 10^6 bytes. See
\`benches/README.md\` for what each measure does exactly.

$TABLE
EOF
)
echo "$REPORT"
if [[ -n $RESULTS ]]; then
    echo "$REPORT" >"$RESULTS"
    log "written to $RESULTS"
fi
