#!/usr/bin/env python3
"""Load check for `tumornet serve` (dev-time tool, Python stdlib only): N concurrent clients POST the same image
to /api/predict for a fixed time on loopback; reports requests/s, latency percentiles, errors by status, and the
server's peak RSS (VmHWM from /proc, when its pid is given).

Usage: python3 tools/load_serve.py IMAGE [--url http://127.0.0.1:8080] [--clients 32] [--seconds 30] [--pid PID]
"""
import argparse
import http.client
import json
import os
import statistics
import threading
import time
import urllib.parse

p = argparse.ArgumentParser()
p.add_argument("image")
p.add_argument("--url", default="http://127.0.0.1:8080")
p.add_argument("--clients", type=int, default=32)
p.add_argument("--seconds", type=float, default=30.0)
p.add_argument("--pid", type=int, default=None)
a = p.parse_args()

body = open(a.image, "rb").read()
name = os.path.basename(a.image)
url = urllib.parse.urlparse(a.url)
deadline = time.monotonic() + a.seconds
latencies, statuses, lock = [], {}, threading.Lock()


def client():
    conn = http.client.HTTPConnection(url.hostname, url.port or 80, timeout=120)
    while time.monotonic() < deadline:
        t0 = time.monotonic()
        try:
            conn.request("POST", f"/api/predict?name={urllib.parse.quote(name)}", body,
                         {"Content-Type": "application/octet-stream"})
            response = conn.getresponse()
            response.read()
            status = response.status
        except Exception as e:  # a dropped connection counts as an error, then reconnect
            status = type(e).__name__
            conn.close()
            conn = http.client.HTTPConnection(url.hostname, url.port or 80, timeout=120)
        with lock:
            latencies.append(time.monotonic() - t0)
            statuses[status] = statuses.get(status, 0) + 1


peak = [0]


def watch():
    while a.pid and time.monotonic() < deadline + 5:
        try:
            for line in open(f"/proc/{a.pid}/status"):
                if line.startswith("VmHWM:"):
                    peak[0] = max(peak[0], int(line.split()[1]))
        except OSError:
            break
        time.sleep(0.5)


start = time.monotonic()
threads = [threading.Thread(target=client) for _ in range(a.clients)] + [threading.Thread(target=watch)]
for t in threads:
    t.start()
for t in threads:
    t.join()
elapsed = time.monotonic() - start
lat = sorted(latencies)
q = lambda f: lat[min(len(lat) - 1, int(f * len(lat)))] * 1000
result = {"clients": a.clients, "seconds": round(elapsed, 1), "requests": len(lat),
          "requests_per_s": round(len(lat) / elapsed, 2), "p50_ms": round(q(0.5)), "p99_ms": round(q(0.99)),
          "mean_ms": round(statistics.mean(lat) * 1000) if lat else None,
          "statuses": {str(k): v for k, v in statuses.items()},
          "errors": sum(v for k, v in statuses.items() if k != 200),
          "server_peak_rss_mb": round(peak[0] / 1024) if peak[0] else None}
print(json.dumps(result, indent=1))
