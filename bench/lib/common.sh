# bench/lib/common.sh — what bench/run and bench/cluster share: the scenarios' load
# generator flags, the rooms each needs, roomcast's raised limits, and starting and
# stopping a server process. Sourced, not run; the caller sets ROOMCAST (and QUICK).

# Load generator flags for a scenario (see bench/README.md for what each measures).
scenario_args() {
    local quick_pub="--duration 4 --hold 1"
    case "$1" in
        s1) if [ "${QUICK:-0}" = 1 ]; then echo "--scenario s1 --per-room 20 --hold 3"; else echo "--scenario s1"; fi ;;
        s2-50k) echo "--scenario s2 --rate 50" ;;
        s2-100k) echo "--scenario s2 --rate 100" ;;
        s2-200k) echo "--scenario s2 --rate 200" ;;
        s2-400k) echo "--scenario s2 --rate 400" ;;
        s2-800k) echo "--scenario s2 --rate 800" ;;
        s2-1600k) echo "--scenario s2 --rate 1600" ;;
        s3) if [ "${QUICK:-0}" = 1 ]; then echo "--scenario s3 --rooms 200"; else echo "--scenario s3"; fi ;;
        s4) if [ "${QUICK:-0}" = 1 ]; then echo "--scenario s4 --rooms 20"; else echo "--scenario s4"; fi ;;
        s5) echo "--scenario s5 --transport polling" ;;
        s5ws) echo "--scenario s5 --transport websocket" ;;
        *) echo "unknown scenario $1" >&2; return 1 ;;
    esac
    if [ "${QUICK:-0}" = 1 ] && [ "$1" != s1 ]; then echo "$quick_pub"; fi
}

# Projects (rooms) a scenario needs, one API key each.
rooms_needed() {
    case "$1" in
        s1) echo 100 ;;
        s4) if [ "${QUICK:-0}" = 1 ]; then echo 20; else echo 100; fi ;;
        s2-*) echo 1 ;;
        s3) if [ "${QUICK:-0}" = 1 ]; then echo 200; else echo 1000; fi ;;
        s5|s5ws) echo 10 ;;
    esac
}

# roomcast's operator limits, raised so rate limits are not what is measured (SPEC §4).
# Only flags the binary documents are passed, and a missing one is reported.
roomcast_limit_flags() {
    local help flags=""
    help=$("$ROOMCAST" --help 2>&1 || true)
    for pair in messages-per-second=1000000 project-messages-per-second=10000000 max-connections=100000; do
        local flag=${pair%%=*}
        if grep -q -- "--$flag" <<<"$help"; then
            flags+=" --$flag ${pair#*=}"
        else
            log "WARNING: roomcast has no --$flag flag; its default limit applies"
        fi
    done
    echo "$flags"
}

# Waits (bounded, ~10 s) for "listening on …:PORT" in log file $1 while process $2
# lives; sets SERVER_PORT. Every server binds port 0 and prints its address, so runs
# never collide with each other or with anything else on the machine.
SERVER_PORT=""
wait_listening() {
    local file=$1 pid=$2 line
    SERVER_PORT=""
    for _ in $(seq 1 200); do
        if line=$(grep -o -m1 'listening on [^ ]*' "$file" 2>/dev/null); then
            SERVER_PORT=${line##*:}
            [ -n "$SERVER_PORT" ] && return 0
        fi
        kill -0 "$pid" 2>/dev/null || return 1
        sleep 0.05
    done
    return 1
}

# Stops process $1 (a child of this shell): SIGTERM, up to 10 s, then SIGKILL.
stop_pid() {
    local pid=$1
    [ -n "$pid" ] || return 0
    if kill -0 "$pid" 2>/dev/null; then
        kill -TERM "$pid" 2>/dev/null || true
        for _ in $(seq 1 100); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$pid" 2>/dev/null || true
    fi
    wait "$pid" 2>/dev/null || true
}
