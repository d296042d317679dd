#!/usr/bin/env bash
# Measures the throughput of the `me` query: starts the release server on 127.0.0.1 with a fresh
# SQLite database, logs one user in, and drives POST /graphql with wrk over keep-alive
# connections, once per connection count. The server is stopped and its folder removed on exit.
#
#   cargo build --release && benches/me_throughput.sh
#
# Settings (environment): CONNECTIONS (default "16 64 128"), DURATION (wrk syntax, default 20s),
# THREADS (wrk threads, default 2), PORT (default 18080), MAMORI_BIN (default
# target/release/mamori). Other MAMORI_* variables and RUST_LOG pass through to the server.
set -euo pipefail

cd "$(dirname "$0")/.."
bin=${MAMORI_BIN:-target/release/mamori}
port=${PORT:-18080}
duration=${DURATION:-20s}
threads=${THREADS:-2}
connections=${CONNECTIONS:-16 64 128}
url="http://127.0.0.1:${port}/graphql"

command -v wrk >/dev/null || { echo "wrk is missing: apt-get install -y wrk" >&2; exit 1; }
[ -x "$bin" ] || { echo "$bin is missing: run cargo build --release first" >&2; exit 1; }

data_dir=$(mktemp -d)
server_pid=""
stop_server() {
    if [ -n "$server_pid" ]; then
        kill "$server_pid" 2>/dev/null || true
        wait "$server_pid" 2>/dev/null || true
    fi
    rm -rf "$data_dir"
}
trap stop_server EXIT

MAMORI_DATA_DIR="$data_dir" MAMORI_LISTEN="127.0.0.1:${port}" "$bin" \
    2>"$data_dir/server.log" &
server_pid=$!
for _ in $(seq 50); do
    curl -fsS "http://127.0.0.1:${port}/healthz" >/dev/null 2>&1 && break
    sleep 0.2
done
curl -fsS "http://127.0.0.1:${port}/healthz" >/dev/null || {
    echo "the server did not start; its log:" >&2
    cat "$data_dir/server.log" >&2
    exit 1
}

login='{"query":"mutation { login(input: {prefecture: 13}) { accessToken } }"}'
MAMORI_TOKEN=$(curl -fsS -H 'Content-Type: application/json' -d "$login" "$url" |
    jq -er '.data.login.accessToken')
export MAMORI_TOKEN
check=$(curl -fsS -H 'Content-Type: application/json' -H "Authorization: Bearer $MAMORI_TOKEN" \
    -d '{"query":"{ me { id prefecture { code } } }"}' "$url")
echo "me returns: $check"
jq -e '.data.me.prefecture.code == 13' <<<"$check" >/dev/null || {
    echo "the me query returned an unexpected response: $check" >&2
    exit 1
}

clock_ticks=$(getconf CLK_TCK)
server_cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$server_pid/stat"; }
# User, nice, system, irq and softirq time of all CPUs, so the run can show what else was busy.
machine_busy_ticks() { awk '/^cpu / { print $2 + $3 + $4 + $7 + $8 }' /proc/stat; }
# Time the hypervisor gave this machine's CPUs to other guests while they had work.
steal_ticks() { awk '/^cpu / { print $9 }' /proc/stat; }
# User plus system time of this shell's finished children, wrk included. `times` must run in
# this shell, not in a command substitution, so it writes to a file first.
children_cpu_seconds() {
    awk 'NR == 2 { gsub(/[ms]/, " "); print $1 * 60 + $2 + $3 * 60 + $4 }' "$data_dir/times"
}

for count in $connections; do
    echo "== $count connections, $threads wrk threads, $duration"
    server_before=$(server_cpu_ticks)
    machine_before=$(machine_busy_ticks)
    steal_before=$(steal_ticks)
    times >"$data_dir/times"
    children_before=$(children_cpu_seconds)
    wrk -t"$threads" -c"$count" -d"$duration" --latency -s benches/me.lua "$url"
    server_after=$(server_cpu_ticks)
    machine_after=$(machine_busy_ticks)
    steal_after=$(steal_ticks)
    times >"$data_dir/times"
    children_after=$(children_cpu_seconds)
    wrk_seconds=$(awk -v a="$children_before" -v b="$children_after" 'BEGIN { print b - a }')
    awk -v server=$((server_after - server_before)) -v machine=$((machine_after - machine_before)) \
        -v steal=$((steal_after - steal_before)) -v hz="$clock_ticks" -v wrk="$wrk_seconds" \
        'BEGIN {
            printf "CPU time during the run: server %.1f s, wrk %.1f s, other processes %.1f s, " \
                "hypervisor steal %.1f s\n", server / hz, wrk, machine / hz - server / hz - wrk,
                steal / hz
        }'
done
