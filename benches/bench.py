"""Drives regauth and the bare baseline server with wrk; prints one table.

Called by benches/run.sh (which builds both binaries):
    python3 benches/bench.py REGAUTH BASELINE SECONDS ROUNDS

Every ratio compares two loads measured in the same run, so the machine's
noise (other builds beside us) mostly cancels out. With ROUNDS > 1 each load
is repeated and the table shows the median, with the spread (min-max of the
ratio) beside it, which says how noisy the run was.
"""

import base64
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

REGAUTH, BASELINE = sys.argv[1], sys.argv[2]
SECONDS = int(sys.argv[3])
ROUNDS = int(sys.argv[4])
CONNECTIONS = 64
SERVICE = "registry.bench"
PASSWORD = "bench-password"
BASIC = base64.b64encode(f"bench:{PASSWORD}".encode()).decode()
AUTH_HEADERS = {
    "X-Original-Method": "GET",
    "X-Original-URI": "/v2/bench/app/manifests/latest",
}

work = tempfile.mkdtemp(prefix="regauth-bench-")
os.mkdir(os.path.join(work, "logs"))
children = []


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(argv, log):
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=open(log, "wb"))
    children.append(proc)
    return proc


def stop(proc):
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def wait_ready(port, path="/healthz"):
    for _ in range(300):
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=1).read()
            return
        except Exception:
            time.sleep(0.05)
    raise SystemExit(f"nothing answers on port {port}")


def rss_kib(proc):
    with open(f"/proc/{proc.pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def lua_headers(headers):
    return "".join(f'wrk.headers["{k}"] = "{v}"\n' for k, v in headers.items())


def write(name, text):
    path = os.path.join(work, name)
    with open(path, "w") as f:
        f.write(text)
    return path


def to_us(text):
    match = re.fullmatch(r"([\d.]+)(us|ms|s|m|h)", text)
    if match is None:
        raise SystemExit(f"wrk printed a latency this script cannot read: {text!r}")
    value, unit = match.groups()
    return float(value) * {"us": 1, "ms": 1e3, "s": 1e6, "m": 6e7, "h": 3.6e9}[unit]


def wrk(url, headers=None, script=None, seconds=SECONDS, connections=CONNECTIONS, env=None,
        count=False):
    """One bounded wrk load; returns (requests/s, p50 us, p99 us), or with
    `count` the number of requests answered."""
    lua = script or write("headers.lua", lua_headers(headers or {}))
    argv = ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency", "-s", lua, url]
    out = subprocess.run(argv, capture_output=True, text=True, check=True,
                         env={**os.environ, **(env or {})}).stdout
    if "Non-2xx" in out or "Socket errors" in out and "timeout" in out:
        raise SystemExit(f"bad answers from {url}:\n{out}")
    if count:
        return int(re.search(r"(\d+) requests in", out).group(1))
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    p50 = to_us(re.search(r"^\s*50%\s+(\S+)", out, re.M).group(1))
    p99 = to_us(re.search(r"^\s*99%\s+(\S+)", out, re.M).group(1))
    return rate, p50, p99


# wrk runs for its whole duration whatever a script does, so collecting N
# tokens (or sending N requests) is a loop of short loads.
COLLECT_LUA = lua_headers({"Authorization": f"Basic {BASIC}"}) + """
local out = io.open(os.getenv("TOKENS_OUT"), "a")
function response(status, headers, body)
  if status == 200 then
    local token = body:match('"token":"([^"]+)"')
    if token then out:write(token, "\\n") end
  end
end
function done() out:flush() end
"""

ROTATE_LUA = lua_headers(AUTH_HEADERS) + """
local tokens = {}
for line in io.lines(os.getenv("TOKENS_IN")) do tokens[#tokens + 1] = line end
local i = tonumber(os.getenv("OFFSET") or "0")
function request()
  i = i % #tokens + 1
  wrk.headers["Authorization"] = "Bearer " .. tokens[i]
  return wrk.format(nil, "/auth")
end
"""


def collect_tokens(port, count):
    path = os.path.join(work, f"tokens-{count}.txt")
    url = f"http://127.0.0.1:{port}/token?service={SERVICE}&scope=repository:bench/app:pull"
    script = write("collect.lua", COLLECT_LUA)
    for _ in range(200):
        wrk(url, script=script, seconds=2, connections=16, env={"TOKENS_OUT": path}, count=True)
        with open(path) as f:
            tokens = list(dict.fromkeys(f.read().split()))
        if len(tokens) >= count:
            break
    if len(tokens) < count:
        raise SystemExit(f"collected {len(tokens)} distinct tokens, wanted {count}")
    with open(path, "w") as f:
        f.write("\n".join(tokens[:count]) + "\n")
    return path


def present_all(port, tokens, count):
    """Sends each of the `count` tokens in the file to /auth (at least once)."""
    script = write("rotate.lua", ROTATE_LUA)
    sent = 0
    while sent < count:
        sent += wrk(f"http://127.0.0.1:{port}/auth", script=script, seconds=2,
                    env={"TOKENS_IN": tokens, "OFFSET": str(sent)}, count=True)


def config(port, algorithm, cache_capacity=None, extra_users=(), log_level=None):
    users = {"bench": {"password": HASH}}
    for name in extra_users:
        users[name] = {"password": HASH}
    doc = {
        "service": SERVICE,
        "issuer": "regauth-bench",
        "realm": f"http://127.0.0.1:{port}/token",
        "listen": [f"127.0.0.1:{port}"],
        "token": {"algorithm": algorithm, "private_key": f"{algorithm}.key",
                  "certificate": f"{algorithm}.crt"},
        "users": users,
        "acl": [
            {"account": "*", "name": "${account}/**", "actions": ["pull", "push"]},
            {"name": "public/**", "actions": ["pull"]},
        ],
    }
    if cache_capacity:
        doc["auth"] = {"cache_capacity": cache_capacity}
    if log_level:
        doc["log"] = {"level": log_level}
    return json.dumps(doc, indent=1)


def regauth(algorithm, cache_capacity=None, log_level=None):
    port = free_port()
    name = f"{algorithm}-{port}"
    path = write(f"{name}.json", config(port, algorithm, cache_capacity, log_level=log_level))
    # Logs beside the config, not in its directory: as under systemd (the
    # journal), the watched directory sees only configuration changes.
    proc = start([REGAUTH, "serve", "--config", path], os.path.join(work, "logs", f"{name}.log"))
    wait_ready(port)
    return proc, port, path


def warm_basic(port):
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/token?service={SERVICE}&scope=repository:bench/app:pull",
        headers={"Authorization": f"Basic {BASIC}"})
    return json.load(urllib.request.urlopen(request))["token"]


def reload_seconds(port, path, new_user):
    """Time from an atomic rename of a new config (adding `new_user`) to the
    new config answering."""
    text = config(port, "ES256", extra_users=(new_user,))
    new = path + ".new"
    with open(new, "w") as f:
        f.write(text)
    basic2 = base64.b64encode(f"{new_user}:{PASSWORD}".encode()).decode()
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/token?service={SERVICE}",
        headers={"Authorization": f"Basic {basic2}"})
    started = time.monotonic()
    os.rename(new, path)
    while time.monotonic() - started < 30:
        try:
            urllib.request.urlopen(request, timeout=2).read()
            return time.monotonic() - started
        except Exception:
            time.sleep(0.005)
    return float("inf")


def one_round():
    r = {}
    base = start([BASELINE, f"127.0.0.1:{(bport := free_port())}"], os.path.join(work, "baseline.log"))
    wait_ready(bport, "/")
    r["base"] = wrk(f"http://127.0.0.1:{bport}/auth", AUTH_HEADERS)
    stop(base)

    proc, port, path = regauth("ES256")
    time.sleep(0.5)
    r["rss_idle"] = rss_kib(proc)
    token = warm_basic(port)
    url = f"http://127.0.0.1:{port}"
    progress("/healthz, /auth")
    r["healthz"] = wrk(f"{url}/healthz")
    r["auth"] = wrk(f"{url}/auth", {**AUTH_HEADERS, "Authorization": f"Bearer {token}"})
    progress("10,000 tokens")
    tokens10k = collect_tokens(port, 10_000)
    r["auth10k"] = wrk(f"{url}/auth", script=write("rotate.lua", ROTATE_LUA),
                       env={"TOKENS_IN": tokens10k})
    metrics = urllib.request.urlopen(f"{url}/metrics").read().decode()
    r["cache"] = {result: int(float(m.group(1))) for result in ("hit", "miss")
                  for m in [re.search(rf'regauth_token_cache_total{{result="{result}"}} (\S+)', metrics)]
                  if m}
    for alg in ("ES256", "RS256", "PS256"):
        progress(f"/token {alg}")
        if alg != "ES256":
            stop(proc)
            proc, port, path = regauth(alg)
            url = f"http://127.0.0.1:{port}"
            warm_basic(port)
        r[f"anon-{alg}"] = wrk(f"{url}/token?service={SERVICE}&scope=repository:public/app:pull")
        r[f"basic-{alg}"] = wrk(f"{url}/token?service={SERVICE}&scope=repository:bench/app:pull",
                                {"Authorization": f"Basic {BASIC}"})
    stop(proc)

    # The same /auth load with every decision written to the log.
    proc, port, path = regauth("ES256", log_level="info,regauth::audit=debug")
    token = warm_basic(port)
    r["auth_logged"] = wrk(f"http://127.0.0.1:{port}/auth",
                           {**AUTH_HEADERS, "Authorization": f"Bearer {token}"})
    stop(proc)

    proc, port, path = regauth("ES256")
    r["reload"] = statistics.median(reload_seconds(port, path, f"bench{n}") for n in range(2, 7))
    stop(proc)

    # 100,000 cached tokens: one pass of distinct tokens through /auth.
    proc, port, path = regauth("ES256", cache_capacity=200_000)
    warm_basic(port)
    progress("100,000 cached tokens")
    present_all(port, collect_tokens(port, 100_000), 100_000)
    time.sleep(1)
    r["rss_100k"] = rss_kib(proc)
    stop(proc)
    return r


def main():
    global HASH
    HASH = subprocess.run([REGAUTH, "hash-password", "--cost", "10"], input=PASSWORD + "\n",
                          capture_output=True, text=True, check=True).stdout.strip()
    for alg in ("ES256", "RS256", "PS256"):
        subprocess.run([REGAUTH, "keygen", "--algorithm", alg, "--key", f"{work}/{alg}.key",
                        "--cert", f"{work}/{alg}.crt"], check=True, stdout=subprocess.DEVNULL)
    rounds = [one_round() for _ in range(ROUNDS)]

    def ratios(fn):
        values = [fn(r) for r in rounds]
        return statistics.median(values), min(values), max(values)

    def cell(fn, fmt="{:.2f}"):
        mid, lo, hi = ratios(fn)
        spread = f" ({fmt.format(lo)}-{fmt.format(hi)})" if ROUNDS > 1 else ""
        return fmt.format(mid) + spread

    rows = [
        ("/auth cached, throughput vs bare hyper", lambda r: r["auth"][0] / r["base"][0], "≥ 0.85"),
        ("/auth cached, p50 vs bare hyper", lambda r: r["auth"][1] / r["base"][1], ""),
        ("/auth cached, p99 vs bare hyper", lambda r: r["auth"][2] / r["base"][2], ""),
        ("/auth cached, every decision logged, vs bare", lambda r: r["auth_logged"][0] / r["base"][0], ""),
        ("/auth 10k tokens rotating, vs bare hyper", lambda r: r["auth10k"][0] / r["base"][0], ""),
    ]
    for alg in ("ES256", "RS256", "PS256"):
        target = "≥ 0.5" if alg == "ES256" else ""
        rows.append((f"/token anonymous {alg}, vs /healthz",
                     lambda r, a=alg: r[f"anon-{a}"][0] / r["healthz"][0], target))
        rows.append((f"/token Basic warm {alg}, vs /healthz",
                     lambda r, a=alg: r[f"basic-{a}"][0] / r["healthz"][0], target))
    print(f"\n{ROUNDS} round(s) of {SECONDS}s wrk loads, -t1 -c{CONNECTIONS}; "
          "ratios are median (min-max) across rounds\n")
    print(f"| {'measure':<44} | {'ratio':>18} | {'target':>7} |")
    print(f"|{'-' * 46}|{'-' * 20}|{'-' * 9}|")
    for name, fn, target in rows:
        print(f"| {name:<44} | {cell(fn):>18} | {target:>7} |")
    absolute = [
        ("/auth cached p99 (ms)", lambda r: r["auth"][2] / 1000, "< 1"),
        ("RSS idle (MB)", lambda r: r["rss_idle"] / 1024, "≤ 15"),
        ("RSS with 100,000 cached tokens (MB)", lambda r: r["rss_100k"] / 1024, "≤ 80"),
        ("reload visible after rename (s)", lambda r: r["reload"], "< 1"),
    ]
    for name, fn, target in absolute:
        print(f"| {name:<44} | {cell(fn, '{:.3g}'):>18} | {target:>7} |")
    print(f"\n/auth verified-token cache after the 10k rotation (last round): {rounds[-1]['cache']}")
    print("\nabsolute numbers (req/s, p50 us, p99 us) of the last round, for context:")
    for key, value in rounds[-1].items():
        if isinstance(value, tuple):
            print(f"  {key:<14} {value[0]:>10.0f} req/s  p50 {value[1]:>8.0f} us  p99 {value[2]:>8.0f} us")


def progress(message):
    print(message, file=sys.stderr, flush=True)


signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
try:
    main()
finally:
    for child in children:
        stop(child)
    if os.environ.get("KEEP") is None:
        shutil.rmtree(work, ignore_errors=True)
    else:
        print("kept", work)
