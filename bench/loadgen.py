"""A small HTTP load generator for when ``wrk`` is not installed: N threads, each with its own
keep-alive connection (reopened when the server closes it), for a fixed duration.

    python bench/loadgen.py URL SECONDS [CONNECTIONS]   # prints one JSON line
"""

from __future__ import annotations

import http.client
import json
import sys
import threading
import time
from urllib.parse import urlsplit


def main(argv) -> int:
    url = urlsplit(argv[0])
    seconds = float(argv[1])
    connections = int(argv[2]) if len(argv) > 2 else 4
    deadline = time.perf_counter() + seconds
    counts = []
    latencies = []
    errors = []

    def worker():
        n = 0
        lat = []
        conn = None
        while time.perf_counter() < deadline:
            if conn is None:
                conn = http.client.HTTPConnection(url.hostname, url.port, timeout=10)
            t0 = time.perf_counter()
            try:
                conn.request("GET", url.path or "/")
                resp = conn.getresponse()
                resp.read()
                if resp.will_close:
                    conn.close()
                    conn = None
            except (OSError, http.client.HTTPException):
                errors.append(1)
                conn = None
                continue
            lat.append(time.perf_counter() - t0)
            n += 1
        counts.append(n)
        latencies.extend(lat)

    t0 = time.perf_counter()
    threads = [threading.Thread(target=worker) for _ in range(connections)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - t0
    latencies.sort()
    total = sum(counts)
    print(json.dumps({
        "requests": total, "seconds": elapsed, "rps": total / elapsed, "errors": len(errors),
        "latency_p50_ms": latencies[len(latencies) // 2] * 1000 if latencies else None,
        "latency_p99_ms": latencies[int(len(latencies) * 0.99)] * 1000 if latencies else None,
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
