#!/usr/bin/env bash
# Instructions per request, counted by callgrind: repeatable on a noisy
# machine, so it shows what one change buys where wrk's ratios cannot.
#
#   bash benches/instructions.sh [REGAUTH] [REQUESTS]
#
# REGAUTH defaults to target/release/regauth (build it first); REQUESTS per
# endpoint defaults to 3000. Starts regauth under valgrind on a loopback port
# with a throwaway config and key, warms each endpoint, then counts only the
# REQUESTS keep-alive requests `ab` sends: /auth with a cached bearer token,
# /healthz, /token anonymous and /token with Basic credentials (cached).
# User space only; under valgrind SHA-256 runs without the CPU's SHA
# instructions, so /auth counts ~63,000 more than it executes natively.
# KEEP=DIR copies callgrind's dumps (one per endpoint) into DIR, for
# callgrind_annotate. Needs valgrind, ab (apache2-utils), curl and python3.
set -euo pipefail
cd "$(dirname "$0")/.."
regauth=$(realpath "${1:-target/release/regauth}")
requests=${2:-3000}
for tool in valgrind callgrind_control ab curl python3; do
    command -v "$tool" >/dev/null || { echo "benches/instructions.sh needs $tool" >&2; exit 1; }
done

work=$(mktemp -d -t regauth-instructions-XXXXXX)
pid=
cleanup() {
    [ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
    [ -n "${KEEP:-}" ] && cp "$work"/callgrind.* "$KEEP"/ 2>/dev/null; rm -rf "$work"
}
trap cleanup EXIT

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
"$regauth" keygen --algorithm ES256 --key "$work/token.key" --cert "$work/token.crt" >/dev/null
hash=$(echo bench-password | "$regauth" hash-password --cost 10)
cat >"$work/regauth.json" <<EOF
{"service": "registry.bench", "issuer": "regauth-bench",
 "realm": "http://127.0.0.1:$port/token", "listen": ["127.0.0.1:$port"],
 "token": {"algorithm": "ES256", "private_key": "token.key", "certificate": "token.crt"},
 "users": {"bench": {"password": "$hash"}},
 "acl": [{"account": "*", "name": "\${account}/**", "actions": ["pull", "push"]},
         {"name": "public/**", "actions": ["pull"]}]}
EOF

valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="$work/callgrind.%p" \
    "$regauth" serve --config "$work/regauth.json" >/dev/null 2>"$work/regauth.log" &
pid=$!
url="http://127.0.0.1:$port"
for _ in $(seq 200); do curl -sf "$url/healthz" >/dev/null && break; sleep 0.2; done
token=$(curl -sf -u bench:bench-password "$url/token?service=registry.bench&scope=repository:bench/app:pull" |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["token"])')

# count LABEL AB-ARGS...: instructions per request for REQUESTS requests.
count() {
    local label=$1
    shift
    callgrind_control --instr=on "$pid" >/dev/null 2>&1
    ab -q -k -c 4 -n 200 "$@" >/dev/null
    callgrind_control --zero "$pid" >/dev/null 2>&1
    ab -q -k -c 4 -n "$requests" "$@" >"$work/ab.txt"
    callgrind_control --dump="$label" "$pid" >/dev/null 2>&1
    callgrind_control --instr=off "$pid" >/dev/null 2>&1
    grep -q "^Non-2xx" "$work/ab.txt" && { echo "$label: some answers were not 2xx" >&2; exit 1; }
    local dump
    dump=$(grep -l "^desc: Trigger: dump $label" "$work"/callgrind.* | head -1)
    local total
    total=$(awk '/^(summary|totals):/ {print $2; exit}' "$dump")
    printf '%-22s %10d instructions/request\n' "$label" $((total / requests))
}

count auth-cached -H "X-Original-Method: GET" -H "X-Original-URI: /v2/bench/app/manifests/latest" \
    -H "Authorization: Bearer $token" "$url/auth"
count healthz "$url/healthz"
count token-anonymous "$url/token?service=registry.bench&scope=repository:public/app:pull"
count token-basic -A bench:bench-password "$url/token?service=registry.bench&scope=repository:bench/app:pull"
