"""Ingest benchmark for ``xray-autoinst daemon``: a paced UDP sender on loopback.

For each pace (documents per second) the sender sends realistic segment documents for a few
seconds; the daemon's status endpoint then says how many it stored. Reported per pace: the pace
asked for and achieved, documents stored per second, the loss rate, and the daemon's RSS; at
the end its peak RSS (VmHWM). Writes a table to stdout and JSON to --out.

    python bench/bench_daemon.py            # paces 5k..80k docs/s, 5 s each
    python bench/bench_daemon.py --quick    # a few seconds in all
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HEADER = b'{"format": "json", "version": 1}\n'


def free_port() -> int:
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as t:
            t.bind(("127.0.0.1", 0))
            port = t.getsockname()[1]
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
                try:
                    u.bind(("127.0.0.1", port))
                except OSError:
                    continue
            return port


def status(port: int) -> dict:
    url = f"http://127.0.0.1:{port}/xray-autoinst/status"
    with urllib.request.urlopen(url, timeout=5) as answer:
        return json.load(answer)


def daemon_pids(pid: int) -> list[int]:
    """The daemon and its children (the store writer)."""
    pids = [pid]
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            pids += [int(x) for x in f.read().split()]
    except OSError:
        pass
    return pids


def rss_kib(pid: int) -> tuple[int, int]:
    """(VmRSS, VmHWM) in KiB summed over the daemon's processes, from /proc."""
    rss = hwm = 0
    for p in daemon_pids(pid):
        try:
            with open(f"/proc/{p}/status") as f:
                for line in f:
                    key, _, rest = line.partition(":")
                    if key == "VmRSS":
                        rss += int(rest.split()[0])
                    elif key == "VmHWM":
                        hwm += int(rest.split()[0])
        except OSError:
            continue
    return rss, hwm


def cpu_seconds(pid: int) -> dict[int, float]:
    """CPU time (user + system) of each daemon process."""
    tick = os.sysconf("SC_CLK_TCK")
    out = {}
    for p in daemon_pids(pid):
        try:
            with open(f"/proc/{p}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            out[p] = (int(fields[11]) + int(fields[12])) / tick
        except (OSError, IndexError, ValueError):
            continue
    return out


# A segment like the agent sends for a web request with a database and an AWS call (~1 KB).
TEMPLATE = (
    '{"name":"bench-web","id":"%(id)016x","trace_id":"1-%(sec)08x-%(rand)024x",'
    '"start_time":%(start).6f,"end_time":%(end).6f,"origin":"AWS::EC2::Instance",'
    '"http":{"request":{"method":"GET","url":"http://localhost:8000/orders/%(n)d?expand=items",'
    '"user_agent":"bench/1.0","client_ip":"127.0.0.1"},"response":{"status":200,'
    '"content_length":512}},"aws":{"xray":{"sdk":"xray-autoinst","sdk_version":"0.1.0"}},'
    '"annotations":{"order_id":"%(n)d","tenant":"acme"},"subsegments":['
    '{"name":"orders@db","id":"%(s1)016x","start_time":%(start).6f,"end_time":%(mid).6f,'
    '"namespace":"remote","sql":{"url":"postgresql://db:5432/orders","database_type":'
    '"PostgreSQL","database_version":"16.2","driver_version":"psycopg 3.2","user":"app",'
    '"sanitized_query":"SELECT id, total, status FROM orders WHERE id = %%s AND tenant = %%s"}},'
    '{"name":"DynamoDB","id":"%(s2)016x","start_time":%(mid).6f,"end_time":%(end).6f,'
    '"namespace":"aws","aws":{"operation":"GetItem","table_name":"carts","region":"us-east-1",'
    '"request_id":"R%(n)020d","retries":0},"http":{"response":{"status":200}}}]}'
)


def make_datagram(n: int, now: float) -> bytes:
    doc = TEMPLATE % {
        "id": n * 3 + 1, "s1": n * 3 + 2, "s2": n * 3 + 3, "sec": int(now), "rand": n,
        "start": now, "mid": now + 0.002, "end": now + 0.005, "n": n,
    }
    return HEADER + doc.encode()


def send_paced(port: int, pace: int, seconds: float, first: int) -> tuple[int, float]:
    """Send ``pace`` documents a second for ``seconds``; return (sent, elapsed)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.connect(("127.0.0.1", port))
    total = int(pace * seconds)
    sent = 0
    n = first
    start = time.perf_counter()
    while sent < total:
        due = min(total, int((time.perf_counter() - start) * pace) + 1)
        now = time.time()
        while sent < due:
            try:
                sock.send(make_datagram(n, now))
            except OSError:
                pass  # ENOBUFS and the like: the document is lost, which the loss rate shows
            sent += 1
            n += 1
        ahead = sent / pace - (time.perf_counter() - start)
        if ahead > 0.0005:
            time.sleep(ahead)
    elapsed = time.perf_counter() - start
    sock.close()
    return sent, elapsed


def settle(port: int, expected_received: int, timeout: float = 60.0) -> tuple[dict, float]:
    """Wait until the daemon has decoded everything it received; return (status, when)."""
    deadline = time.monotonic() + timeout
    last = None
    stable_since = time.perf_counter()
    while time.monotonic() < deadline:
        st = status(port)
        c = st["counters"]
        key = (c["received"], c["stored"], c["dropped"])
        done = c["backlog_bytes"] == 0 and c["stored"] + c["dropped"] >= c["received"]
        if key != last:
            last = key
            stable_since = time.perf_counter()
        elif done and time.perf_counter() - stable_since > 0.3:
            return st, stable_since
        time.sleep(0.02)
    return status(port), time.perf_counter()


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--paces", default="5000,10000,20000,40000,80000",
                   help="documents per second, comma-separated")
    p.add_argument("--seconds", type=float, default=5.0, help="seconds per pace")
    p.add_argument("--quick", action="store_true", help="paces 5000,20000 for 1 s each")
    p.add_argument("--out", default=os.path.join(ROOT, ".bench", "daemon.json"))
    p.add_argument("--daemon-arg", action="append", default=[],
                   help="extra daemon option (repeatable), e.g. --daemon-arg=--max-traces=1000")
    args = p.parse_args(argv)
    paces = [int(x) for x in args.paces.split(",") if x.strip()]
    seconds = args.seconds
    if args.quick:
        paces, seconds = [5000, 20000], 1.0

    port = free_port()
    tmp = tempfile.mkdtemp(prefix="xray-bench-")
    store = os.path.join(tmp, "traces.db")
    env = dict(os.environ, XRAY_ENABLED="false")
    env["PYTHONPATH"] = ROOT + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    cmd = [sys.executable, "-m", "xray_autoinst.daemon", "daemon", "--listen",
           f"127.0.0.1:{port}", "--store", store, "--summary-interval", "3600",
           *args.daemon_arg]
    log_path = os.path.join(tmp, "daemon.log")
    with open(log_path, "w") as log_file:
        proc = subprocess.Popen(cmd, env=env, stdout=log_file, stderr=log_file)
    try:
        for _ in range(200):
            try:
                status(port)
                break
            except OSError:
                time.sleep(0.05)
        else:
            raise SystemExit(f"the daemon did not start; see {log_path}")
        results = []
        next_n = 0
        sample = make_datagram(0, time.time())
        for pace in paces:
            before = status(port)["counters"]
            cpu_before = cpu_seconds(proc.pid)
            sent, elapsed = send_paced(port, pace, seconds, next_n)
            next_n += sent
            after, done_at = settle(port, before["received"] + sent)
            c = after["counters"]
            stored = c["stored"] - before["stored"]
            rss, hwm = rss_kib(proc.pid)
            cpu_after = cpu_seconds(proc.pid)
            cpu = {p: cpu_after[p] - cpu_before.get(p, 0.0) for p in cpu_after}
            results.append({
                "pace": pace,
                "sent": sent,
                "achieved_pace": round(sent / elapsed),
                "stored": stored,
                "lost": sent - stored,
                "loss_rate": round((sent - stored) / sent, 6) if sent else 0.0,
                "overload_dropped": c["overload"] - before["overload"],
                "ingest_rate": round(stored / elapsed),
                "rss_mib": round(rss / 1024, 1),
                "cpu_us_per_doc": {
                    ("daemon" if p == proc.pid else "writer"): round(t / sent * 1e6, 1)
                    for p, t in cpu.items()
                },
            })
        rss, hwm = rss_kib(proc.pid)
    finally:
        proc.terminate()
        proc.wait(30)
    busiest = results[-1]["cpu_us_per_doc"] if results else {}
    summary = {
        "python": sys.version.split()[0],
        "cpus": os.cpu_count(),
        "seconds_per_pace": seconds,
        "document_bytes": len(sample) - len(HEADER),
        "rcvbuf_max": _read("/proc/sys/net/core/rmem_max"),
        "daemon_args": args.daemon_arg,
        "results": results,
        "peak_rss_mib": round(hwm / 1024, 1),
        "max_pace_without_loss": max([r["pace"] for r in results if r["lost"] == 0], default=0),
        # CPU time per document at the highest pace, and what that allows when the decoder and
        # the writer each get a core (an estimate: the measured rates above are what counts)
        "cpu_us_per_doc_at_highest_pace": busiest,
        "cpu_bound_docs_per_s": round(1e6 / max(busiest.values())) if busiest else None,
        "load_average": os.getloadavg(),
    }
    print(f"document size {summary['document_bytes']} bytes, {seconds:g} s per pace, "
          f"{summary['cpus']} CPUs, Python {summary['python']}")
    print(f"{'pace/s':>8} {'achieved/s':>10} {'sent':>8} {'stored':>8} {'lost':>7} "
          f"{'loss':>8} {'stored/s':>9} {'RSS MiB':>8}  CPU us/doc")
    for r in results:
        print(f"{r['pace']:>8} {r['achieved_pace']:>10} {r['sent']:>8} {r['stored']:>8} "
              f"{r['lost']:>7} {r['loss_rate'] * 100:>7.2f}% {r['ingest_rate']:>9} "
              f"{r['rss_mib']:>8}  "
              + " ".join(f"{k} {v}" for k, v in r["cpu_us_per_doc"].items()))
    print(f"peak RSS {summary['peak_rss_mib']} MiB; highest pace without loss: "
          f"{summary['max_pace_without_loss']} documents/s")
    if summary["cpu_bound_docs_per_s"]:
        print(f"CPU-bound estimate (decoder and writer each with a core): "
              f"{summary['cpu_bound_docs_per_s']} documents/s; load average "
              + " ".join(f"{x:.2f}" for x in summary["load_average"]))
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(summary, f, indent=2)
    print(f"wrote {args.out}")
    return 0


def _read(path: str):
    try:
        with open(path) as f:
            return int(f.read().strip())
    except (OSError, ValueError):
        return None


if __name__ == "__main__":
    sys.exit(main())
