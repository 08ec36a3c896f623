#!/usr/bin/env bash
# Latency of a valid first login while 300 clients flood /token with wrong
# passwords, through nginx as shipped (nginx/regauth-upstream.conf and
# nginx/regauth-token.conf; regauth on a trusted unix socket). A measurement,
# not a test: it prints numbers and asserts nothing.
#
#   bash benches/login_flood.sh [BINARY]          (default: a release build of this tree)
#
# Environment:
#   WARMUP            seconds of flood before the first measured login (default 5)
#   CONNECTIONS       concurrent wrong-password clients (default 300)
#   LOGINS            valid first logins measured, one user each: half quiet, half
#                     under the flood (default 10)
#   LOGIN_LIMITS      JSON for regauth's "login_limits" section, e.g. '{"enabled": false}'
#                     (leave unset for binaries that predate the section)
#   NGINX_LIMIT_REQ=1 switch on the commented limit_req example of the shipped nginx files
#   SPRAY=1           the flood guesses at a new account name each request
#                     instead of always "alice"
#
# The flood (wrk) comes from 127.0.0.1; the valid logins (curl) from 127.0.0.3, so
# regauth, reading the address nginx appended to X-Forwarded-For, tells them apart.
# Every measured login is a first one (its user never logged in before: no cache).
# Needs nginx, wrk, curl and python3. bcrypt cost 10, as `regauth hash-password`.
set -euo pipefail
cd "$(dirname "$0")/.."
warmup=${WARMUP:-5}
connections=${CONNECTIONS:-300}
logins=${LOGINS:-10}
for tool in nginx wrk curl python3; do
    command -v "$tool" >/dev/null || { echo "benches/login_flood.sh needs $tool" >&2; exit 1; }
done

if [[ $# -ge 1 ]]; then
    bin=$(realpath "$1")
else
    cargo build --release --quiet
    bin=$PWD/target/release/regauth
fi
dir=$(mktemp -d)
chmod 755 "$dir"
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null; done
    rm -rf "$dir"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
nginx_port=$(free_port)
metrics_port=$(free_port)
"$bin" keygen --algorithm ES256 --key "$dir/token.key" --cert "$dir/token.crt" >/dev/null
hash=$(echo right-password | "$bin" hash-password --cost 10)
users="\"alice\": { \"password\": \"$hash\" }"
for i in $(seq "$logins"); do users+=", \"user$i\": { \"password\": \"$hash\" }"; done
limits_line=
[[ -n ${LOGIN_LIMITS:-} ]] && limits_line="\"login_limits\": $LOGIN_LIMITS,"
cat > "$dir/regauth.json" <<JSON
{
  "service": "registry.bench", "issuer": "regauth-bench",
  "realm": "http://127.0.0.1:$nginx_port/token",
  "listen": [ { "address": "unix:$dir/regauth.sock", "trusted": true, "mode": "0666" },
              "127.0.0.1:$metrics_port" ],
  "token": { "algorithm": "ES256", "private_key": "token.key", "certificate": "token.crt" },
  "users": { $users },
  "acl": [ { "account": "*", "name": "\${account}/**", "actions": ["pull", "push"] } ],
  $limits_line
  "log": { "level": "error" }
}
JSON
"$bin" serve --config "$dir/regauth.json" 2>"$dir/regauth.log" &
pids+=($!)
regauth_pid=$!
for _ in $(seq 100); do
    curl -fs "http://127.0.0.1:$metrics_port/healthz" >/dev/null && break
    sleep 0.1
done

mkdir -p "$dir/nginx"
sed "s|unix:/run/regauth/regauth.sock|unix:$dir/regauth.sock|" nginx/regauth-upstream.conf \
    > "$dir/nginx/upstream.conf"
cp nginx/regauth-token.conf "$dir/nginx/token.conf"
if [[ ${NGINX_LIMIT_REQ:-0} == 1 ]]; then
    # The shipped, commented first layer, switched on.
    sed -i 's/^# limit_req_zone/limit_req_zone/' "$dir/nginx/upstream.conf"
    sed -i 's/^    # limit_req/    limit_req/' "$dir/nginx/token.conf"
    grep -q '^limit_req_zone' "$dir/nginx/upstream.conf" || { echo "no limit_req_zone example" >&2; exit 1; }
fi
cat > "$dir/nginx/nginx.conf" <<CONF
$( [[ $EUID -eq 0 ]] && echo "user root root;" )
worker_processes 2;
pid $dir/nginx/nginx.pid;
error_log $dir/nginx/error.log;
events { worker_connections 4096; }
http {
    access_log off;
    client_body_temp_path $dir/nginx/body;
    proxy_temp_path $dir/nginx/proxy;
    fastcgi_temp_path $dir/nginx/fastcgi;
    uwsgi_temp_path $dir/nginx/uwsgi;
    scgi_temp_path $dir/nginx/scgi;
    include $dir/nginx/upstream.conf;
    server {
        listen 127.0.0.1:$nginx_port;
        include $dir/nginx/token.conf;
    }
}
CONF
nginx -p "$dir/nginx" -c "$dir/nginx/nginx.conf" -g 'daemon off;' &
pids+=($!)
for _ in $(seq 100); do
    curl -s -o /dev/null "http://127.0.0.1:$nginx_port/token" && break
    sleep 0.1
done

login() { # user -> "status seconds"
    curl -s -o /dev/null -w '%{http_code} %{time_total}\n' --max-time 120 --interface 127.0.0.3 \
        -u "$1:right-password" \
        "http://127.0.0.1:$nginx_port/token?service=registry.bench&scope=repository:$1/app:pull"
}
bcrypt_runs() {
    curl -fs "http://127.0.0.1:$metrics_port/metrics" |
        awk '/^regauth_bcrypt_seconds_count/ {n=$2} END {print n+0}'
}
summary() { # label, then "status seconds" lines on stdin
    python3 -c '
import sys, statistics
label = sys.argv[1]
rows = [line.split() for line in sys.stdin if line.strip()]
secs = sorted(float(s) for _, s in rows)
codes = ",".join(sorted({c for c, _ in rows}))
print(f"{label:44} n={len(secs)} status={codes} median={statistics.median(secs):.3f}s max={secs[-1]:.3f}s")
' "$1"
}

# Quiet: the first logins of half the users (then forgotten: each user logs in once).
quiet_users=$(( logins / 2 ))
for i in $(seq "$quiet_users"); do login "user$i"; done | summary "valid first login, quiet"

# Flood: wrong passwords from $connections connections, from 127.0.0.1.
# Basic headers for the flood: always alice, or (SPRAY=1) 5000 account names in turn.
if [[ ${SPRAY:-0} == 1 ]]; then names=$(seq -f 'guess%g' 5000); else names=alice; fi
{
    echo "local headers = {"
    for name in $names; do printf '  "Basic %s",\n' "$(printf '%s:wrong-password' "$name" | base64 -w0)"; done
    echo "}"
    cat <<'LUA'
local n = 0
request = function()
    n = n % #headers + 1
    return wrk.format("GET", "/token?service=registry.bench&scope=repository:alice/app:pull",
        { ["Authorization"] = headers[n] })
end
LUA
} > "$dir/flood.lua"
runs_before=$(bcrypt_runs)
flood_started=$SECONDS
# The flood runs until the measured logins are done, then is stopped.
wrk -t2 -c"$connections" -d600s --timeout 60s -s "$dir/flood.lua" \
    "http://127.0.0.1:$nginx_port/" >/dev/null 2>&1 &
wrk_pid=$!
pids+=($wrk_pid)
sleep "$warmup"
for i in $(seq $(( quiet_users + 1 )) "$logins"); do
    login "user$i"
    sleep 0.5
done | summary "valid first login, under the flood"
flood_secs=$(( SECONDS - flood_started ))
kill "$wrk_pid"
runs_after=$(bcrypt_runs)
rss=$(awk '/VmRSS/ {print $2 " " $3}' "/proc/$regauth_pid/status")
echo "flood: $connections connections for ${flood_secs}s; bcrypt runs meanwhile: $(( runs_after - runs_before ))"
echo "/token answers (whole run):"
curl -fs "http://127.0.0.1:$metrics_port/metrics" |
    awk '/^regauth_(http_requests_total\{endpoint="token"|login_refused_total)/' |
    sed 's/^/  /'
echo "regauth resident memory after the flood: $rss"
