#!/usr/bin/env python3
"""Server abuse check for `tumornet serve` on loopback (dev-time, Python stdlib only): oversized body, slow
upload, slow-loris headers, malformed multipart, wrong content type, 256 concurrent connections, path traversal.
For each: the status the server answered and how long it took; throughout, whether /healthz still answers and
how fast; the server's peak RSS when its pid is given. Start the server with a short timeout, e.g.
`tumornet serve RUN --addr 127.0.0.1:8089 --timeout 5`.

Usage: python3 tools/abuse_serve.py [--url http://127.0.0.1:8089] [--pid PID]
"""
import argparse
import json
import socket
import threading
import time
import urllib.parse

p = argparse.ArgumentParser()
p.add_argument("--url", default="http://127.0.0.1:8089")
p.add_argument("--pid", type=int, default=None)
a = p.parse_args()
u = urllib.parse.urlparse(a.url)
addr = (u.hostname, u.port)


def status_of(raw, body=b"", pause=None, read_timeout=60):
    """Send raw request bytes (then body, optionally dribbled), return (status or error, seconds)."""
    t0 = time.monotonic()
    try:
        s = socket.create_connection(addr, timeout=read_timeout)
        s.sendall(raw)
        if pause:
            for i in range(0, len(body)):
                s.sendall(body[i:i + 1])
                time.sleep(pause)
                if time.monotonic() - t0 > read_timeout:
                    break
        elif body:
            try:
                s.sendall(body)
            except OSError:
                pass
        data = b""
        while b"\r\n" not in data:
            chunk = s.recv(4096)
            if not chunk:
                break
            data += chunk
        s.close()
        line = data.split(b"\r\n", 1)[0].decode(errors="replace")
        return (int(line.split()[1]) if line.startswith("HTTP/") else f"no answer ({line!r})"), time.monotonic() - t0
    except Exception as e:
        return type(e).__name__, time.monotonic() - t0


def healthz():
    return status_of(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", read_timeout=10)


def rss():
    if not a.pid:
        return None
    for line in open(f"/proc/{a.pid}/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) // 1024


results = {}
req = lambda path, ctype, length, extra=b"": (f"POST {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                                              f"Content-Type: {ctype}\r\nContent-Length: {length}\r\n").encode() + extra + b"\r\n"
big = b"\xff" * (40 * 1024 * 1024)
results["oversized_40MiB"] = status_of(req("/api/predict", "image/jpeg", len(big)), big)
results["wrong_content_type"] = status_of(req("/api/predict", "text/plain", 5), b"hello")
results["malformed_multipart"] = status_of(req("/api/predict", "multipart/form-data; boundary=zz", 12), b"--zz\r\nbroken")
results["path_traversal"] = status_of(b"GET /../../etc/passwd HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
results["path_traversal_encoded"] = status_of(b"GET /%2e%2e/%2e%2e/etc/passwd HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")

# A slow upload: 1 byte every 0.2 s of a 1000-byte body; the request timeout must cut it.
slow = {}
t = threading.Thread(target=lambda: slow.update(r=status_of(req("/api/predict", "image/jpeg", 1000), b"x" * 1000, pause=0.2, read_timeout=120)))
t.start()
time.sleep(1)
results["healthz_during_slow_upload"] = healthz()
t.join()
results["slow_upload"] = slow["r"]

# Slow-loris: 64 connections each dribbling header bytes; /healthz must keep answering.
stop = threading.Event()


def loris():
    try:
        s = socket.create_connection(addr, timeout=5)
        s.sendall(b"POST /api/predict HTTP/1.1\r\nHost: x\r\n")
        while not stop.is_set():
            s.sendall(b"X-a: b\r\n")
            time.sleep(1)
    except Exception:
        pass


lorises = [threading.Thread(target=loris) for _ in range(64)]
for t in lorises:
    t.start()
time.sleep(3)
results["healthz_during_64_slowloris"] = healthz()

# 256 idle connections at once, then /healthz.
conns = []
for _ in range(256):
    try:
        conns.append(socket.create_connection(addr, timeout=5))
    except Exception as e:
        results.setdefault("connect_errors", 0)
        results["connect_errors"] += 1
results["open_connections"] = len(conns)
results["healthz_with_256_open"] = healthz()
for c in conns:
    c.close()
stop.set()
for t in lorises:
    t.join()
results["healthz_after"] = healthz()
results["server_peak_rss_mb"] = rss()
print(json.dumps({k: (list(v) if isinstance(v, tuple) else v) for k, v in results.items()}, indent=1))
