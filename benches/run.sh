#!/usr/bin/env bash
# regauth's benchmark: one command, one table of ratios measured in the same run.
#
#   bash benches/run.sh [seconds-per-load] [rounds]      (defaults: 5 and 1)
#
# Builds regauth and benches/baseline.rs (a bare hyper server) with the release
# profile, then benches/bench.py starts them on loopback with throwaway configs
# and keys, drives them with bounded wrk loads and prints the table. Needs wrk,
# curl and python3 (Debian: wrk curl python3). Everything stays on 127.0.0.1
# and in a temp dir; every process started is stopped by its PID.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v wrk >/dev/null || { echo "benches/run.sh needs wrk (apt-get install wrk)" >&2; exit 1; }
# One build for both, so that they share one set of dependency features.
baseline=$(nice cargo build --release --locked --quiet --bin regauth --bench baseline --message-format=json |
    python3 -c 'import json,sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m["target"]["name"] == "baseline" and m.get("executable"):
        print(m["executable"])')
exec python3 benches/bench.py target/release/regauth "$baseline" "${1:-5}" "${2:-1}"
