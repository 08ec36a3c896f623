#!/usr/bin/env python3
"""Hostile load against one `regauth serve` (issue 8 item 3), measured the same way for
any binary: `benches/hostile_load.py BINARY [BINARY...]`.

For each binary, in a fresh temp dir with a public TCP listener and nginx's trusted unix
socket, it reports:
  1. RSS at rest, then under a header flood: FLOOD connections on the TCP port, each
     sending 125 KB of an unfinished request head and holding it;
  2. latency of a valid `/auth` (a bearer token, on the unix socket, as nginx asks) at rest
     and while HOLDERS keep-alive TCP connections each send `GET /healthz` every 4 s.
Numbers, not assertions: the tests prove behaviour; this tells the cost.
Only loopback and a unix socket in a temp dir are used; every loop is bounded.
"""

import base64
import json
import os
import resource
import selectors
import shutil
import socket
import subprocess
import sys
import tempfile
import time

FLOOD = int(os.environ.get("FLOOD", 2000))
HOLDERS = int(os.environ.get("HOLDERS", 4400))
HEAD_BYTES = 125 * 1024
PROBES = 20


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return -1


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def unix_request(path, request, timeout):
    """Sends one raw HTTP/1.1 request on a new unix connection; returns (status, body,
    seconds) or (None, reason, seconds)."""
    started = time.monotonic()
    try:
        with socket.socket(socket.AF_UNIX) as s:
            s.settimeout(timeout)
            s.connect(path)
            s.sendall(request)
            data = b""
            while b"\r\n\r\n" not in data:
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
            head, _, body = data.partition(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            while len(body) < length:
                chunk = s.recv(65536)
                if not chunk:
                    break
                body += chunk
            status = int(head.split(b" ")[1])
            return status, body, time.monotonic() - started
    except OSError as error:
        return None, str(error), time.monotonic() - started


def auth_latencies(sock, token):
    request = (
        "GET /auth HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
        f"Authorization: Bearer {token}\r\n"
        "X-Original-Method: GET\r\nX-Original-URI: /v2/alice/app/manifests/latest\r\n\r\n"
    ).encode()
    times, failures = [], 0
    for _ in range(PROBES):
        status, _, seconds = unix_request(sock, request, timeout=10)
        if status == 200:
            times.append(seconds * 1000)
        else:
            failures += 1
    times.sort()
    if not times:
        return f"no answer ({failures}/{PROBES} failed or timed out after 10 s)"
    median = times[len(times) // 2]
    return f"median {median:.2f} ms, max {times[-1]:.2f} ms, {failures}/{PROBES} failed"


def run(binary):
    work = tempfile.mkdtemp(prefix="regauth-hostile-")
    port = free_port()
    sock = os.path.join(work, "nginx.sock")
    hashed = subprocess.run(
        [binary, "hash-password", "--cost", "4"], input=b"secret\n", capture_output=True, check=True
    ).stdout.decode().strip().splitlines()[-1]
    config = {
        "service": "registry.test",
        "issuer": "regauth",
        "realm": "http://127.0.0.1/token",
        "listen": [f"127.0.0.1:{port}", {"address": f"unix:{sock}", "trusted": True}],
        "token": {"algorithm": "ES256", "private_key": "token.key", "generate_if_missing": True},
        "users": {"alice": {"password": hashed}},
        "acl": [{"account": "*", "name": "${account}/**", "actions": ["pull"]}],
        "limits": {"header_read_timeout_secs": 60},
    }
    path = os.path.join(work, "regauth.json")
    with open(path, "w") as f:
        json.dump(config, f)
    log = open(os.path.join(work, "regauth.log"), "w")
    server = subprocess.Popen([binary, "serve", "--config", path], stderr=log, env={**os.environ, "RUST_LOG": "warn"})
    try:
        for _ in range(200):
            if os.path.exists(sock) and unix_request(sock, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n", 1)[0] == 200:
                break
            time.sleep(0.05)
        basic = base64.b64encode(b"alice:secret").decode()
        status, body, _ = unix_request(
            sock,
            (f"GET /token?service=registry.test&scope=repository:alice/app:pull HTTP/1.1\r\nHost: x\r\n"
             f"Connection: close\r\nAuthorization: Basic {basic}\r\n\r\n").encode(),
            10,
        )
        token = json.loads(body)["token"]
        print(f"== {binary}")
        print(f"RSS at rest: {rss_kib(server.pid) / 1024:.1f} MiB")
        print(f"/auth at rest: {auth_latencies(sock, token)}")

        # 1. Header flood.
        flood = []
        head = b"GET /healthz HTTP/1.1\r\nHost: x\r\n" + b"X-Pad: " + b"a" * (HEAD_BYTES - 40) + b"\r\n"
        for _ in range(FLOOD):
            s = socket.socket()
            s.setblocking(False)
            s.connect_ex(("127.0.0.1", port))
            flood.append([s, 0])
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and any(sent < len(head) for _, sent in flood):
            for entry in flood:
                s, sent = entry
                if sent < len(head):
                    try:
                        entry[1] += s.send(head[sent:sent + 65536])
                    except BlockingIOError:
                        pass
                    except OSError:
                        entry[1] = len(head)  # refused or reset: the server let go
            time.sleep(0.01)
        time.sleep(1)
        print(f"RSS under header flood ({FLOOD} x 125 KB unfinished heads): {rss_kib(server.pid) / 1024:.1f} MiB")
        print(f"/auth during header flood: {auth_latencies(sock, token)}")
        for s, _ in flood:
            s.close()
        time.sleep(1)

        # 2. Keep-alive holders.
        holders = []
        for _ in range(HOLDERS):
            s = socket.socket()
            s.setblocking(False)
            s.connect_ex(("127.0.0.1", port))
            holders.append(s)
        poke = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
        selector = selectors.DefaultSelector()
        time.sleep(0.5)
        for s in holders:
            try:
                s.send(poke)
            except OSError:
                pass
            selector.register(s, selectors.EVENT_READ)
        end = time.monotonic() + 4
        while time.monotonic() < end:
            for key, _ in selector.select(timeout=0.2):
                try:
                    key.fileobj.recv(65536)
                except OSError:
                    pass
        print(f"RSS with {HOLDERS} keep-alive holders: {rss_kib(server.pid) / 1024:.1f} MiB")
        print(f"/auth during keep-alive holders: {auth_latencies(sock, token)}")
        for s in holders:
            s.close()
    finally:
        server.terminate()
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            server.kill()
        log.close()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    for binary in sys.argv[1:]:
        run(os.path.abspath(binary))
