#!/usr/bin/env bash
# Throughput of regauth's hot paths, as ratios against /healthz measured in the
# same run on the same machine (absolute numbers on shared machines mean little).
#
#   bash benches/throughput.sh [seconds-per-run]     (default 5)
#
# Starts a release build of regauth on a random loopback port with a throwaway
# config, then drives it with wrk (Debian package `wrk`) for a bounded time:
#   - GET /healthz                         baseline: routing and HTTP only
#   - GET /auth, cached bearer token       nginx's per-request check (cache hit)
#   - GET /token, Basic, cached password   a client's burst of token requests (sign ES256)
# and reports the resident memory after the runs. Everything stays on 127.0.0.1.
# Needs wrk, curl and python3.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-5}
command -v wrk >/dev/null || { echo "benches/throughput.sh needs wrk (apt-get install wrk)" >&2; exit 1; }

cargo build --release --quiet
bin=target/release/regauth
dir=$(mktemp -d)
pid=
cleanup() {
    [[ -n $pid ]] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
    rm -rf "$dir"
}
trap cleanup EXIT

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
hash=$(echo bench-password | "$bin" hash-password --cost 10)
"$bin" keygen --algorithm ES256 --key "$dir/token.key" --cert "$dir/token.crt" >/dev/null
cat > "$dir/regauth.json" <<JSON
{
  "service": "registry.bench", "issuer": "regauth-bench",
  "realm": "http://127.0.0.1:$port/token", "listen": ["127.0.0.1:$port"],
  "token": { "algorithm": "ES256", "private_key": "token.key", "certificate": "token.crt" },
  "users": { "bench": { "password": "$hash" } },
  "acl": [ { "account": "*", "name": "\${account}/**", "actions": ["pull", "push"] } ],
  "log": { "level": "warn" }
}
JSON
"$bin" serve --config "$dir/regauth.json" 2>"$dir/regauth.log" &
pid=$!
for _ in $(seq 100); do
    curl -fs "http://127.0.0.1:$port/healthz" >/dev/null && break
    sleep 0.1
done

basic=$(printf 'bench:bench-password' | base64)
token=$(curl -fs -H "Authorization: Basic $basic" \
    "http://127.0.0.1:$port/token?service=registry.bench&scope=repository:bench/app:pull" |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["token"])')

cat > "$dir/auth.lua" <<LUA
wrk.headers["Authorization"] = "Bearer $token"
wrk.headers["X-Original-Method"] = "GET"
wrk.headers["X-Original-URI"] = "/v2/bench/app/manifests/latest"
LUA
cat > "$dir/token.lua" <<LUA
wrk.headers["Authorization"] = "Basic $basic"
LUA

rate() { # url [script] -> requests/s
    local out
    out=$(wrk -t2 -c32 -d"${seconds}s" ${2:+-s "$2"} "$1")
    if grep -q "Non-2xx" <<<"$out"; then
        echo "non-2xx answers from $1:" >&2; echo "$out" >&2; exit 1
    fi
    awk '/Requests\/sec/ {print $2}' <<<"$out"
}

base=$(rate "http://127.0.0.1:$port/healthz")
auth=$(rate "http://127.0.0.1:$port/auth" "$dir/auth.lua")
tok=$(rate "http://127.0.0.1:$port/token?service=registry.bench&scope=repository:bench/app:pull" "$dir/token.lua")
rss=$(awk '/VmRSS/ {print $2 " " $3}' "/proc/$pid/status")

ratio() { awk -v a="$1" -v b="$base" 'BEGIN { printf "%.2f", a / b }'; }
printf '%-40s %12s %8s\n' "path" "req/s" "ratio"
printf '%-40s %12.0f %8.2f\n' "/healthz (baseline)" "$base" 1
printf '%-40s %12.0f %8s\n' "/auth, cached bearer token" "$auth" "$(ratio "$auth")"
printf '%-40s %12.0f %8s\n' "/token, Basic (cached), ES256 signing" "$tok" "$(ratio "$tok")"
echo "resident memory after the runs: $rss"
