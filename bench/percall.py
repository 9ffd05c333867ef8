"""Per-call cost of the client integrations: sqlite3, psycopg (local PostgreSQL), http.client
(loopback server) and botocore (``botocore``: a ``Stubber`` answering on ``before-call``, so the
request is never built, signed or parsed; ``botocore-wire``: a canned DynamoDB HTTP response
handed back on ``before-send``, so signing, the agent's trace-header handler and parsing the
response all run, with no network), bare versus this agent versus aws-xray-sdk's patchers.
Bare and this agent are measured in one process, batch by batch interleaved (the agent's
integration applied and removed between batches); aws-xray-sdk, which cannot unpatch, in a
process of its own, against the bare batches of the same round. Several rounds, processes in a
rotating order.

    python bench/percall.py --instructions [--calls N] [--cases sqlite3,psycopg,...] [--python P]

counts instructions per call instead (callgrind; deterministic, whatever else runs on the
machine): each case bare, traced (the calling thread's work: segments dropped when they end)
and encoded (the same with each segment also encoded into datagrams, as the sender does), in
processes of their own under the interpreter running this script (or ``--python``), with the
agent installed in it.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys

from benchlib import HERE, RULES_SAMPLED, closed_udp_port, rotate, run_worker, summary, worker_env
from calls_worker import BOTOCORE, PER_SEGMENT

CASES = ("sqlite3", "psycopg", "http.client", "botocore", "botocore-wire")
PG = ("127.0.0.1", int(os.environ.get("PGPORT", "5432")))
DSN = f"host={PG[0]} port={PG[1]} dbname=test user=postgres connect_timeout=5"


def _reachable(addr) -> str | None:
    try:
        with socket.create_connection(addr, timeout=2):
            return None
    except OSError as exc:
        return (f"PostgreSQL not reachable at {addr[0]}:{addr[1]} ({exc}); "
                "start it with scripts/services.sh")


class HttpServer:
    def __enter__(self):
        self.proc = subprocess.Popen([sys.executable, os.path.join(HERE, "http_server.py")],
                                     stdout=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline()
        self.port = int(line.split()[1])
        return self

    def __exit__(self, *exc):
        self.proc.terminate()
        self.proc.wait(10)


def run(venvs: dict, launcher_env: dict, modes, rounds: int, batches: int, target_s: float,
        log=print) -> dict:
    """``modes``: worker processes per round, ``xray`` (bare and this agent) and optionally
    ``sdk``; ``venvs``: mode -> Venv; ``launcher_env``: PYTHONPATH and XRAY_AUTOINST_EXPECT
    for ours, as xray-run sets them."""
    daemon = f"127.0.0.1:{closed_udp_port()}"
    base_env = worker_env({"BENCH_DAEMON": daemon})
    envs = {
        "xray": dict(base_env, AWS_XRAY_DAEMON_ADDRESS=daemon, XRAY_SAMPLING="local",
                     XRAY_SAMPLING_RULES=RULES_SAMPLED, XRAY_SERVICE_NAME="bench",
                     **launcher_env),
        "sdk": base_env,
    }
    pg_problem = _reachable(PG)
    rows = []
    versions = {}
    names = ["bare", "xray"] + (["sdk"] if "sdk" in modes else [])
    with HttpServer() as server:
        for case in CASES:
            if case == "psycopg" and pg_problem:
                rows.extend({"case": case, "mode": m, "skipped": pg_problem} for m in names)
                log("  per call, psycopg: " + pg_problem)
                continue
            spec = {"case": case, "batches": batches, "target_s": target_s, "dsn": DSN,
                    "http_port": server.port}
            # variant -> list (one per round) of {"wall": [...], ...}
            per_round = {n: [] for n in names}
            unavailable = {}
            info = {}
            log(f"  per call, {case}: {rounds} rounds x {', '.join(modes)}")
            for r in range(rounds):
                for mode in rotate(modes, r):
                    if mode in unavailable:
                        continue
                    res = run_worker(venvs[mode].python, "calls_worker.py",
                                     dict(spec, mode=mode), env=envs[mode])
                    if "not_available" in res:
                        unavailable[mode] = res["not_available"]
                        continue
                    versions.setdefault(mode, {}).update(res["versions"])
                    if res.get("integration"):
                        info["integration"] = res["integration"]
                    for name, rec in res["variants"].items():
                        per_round[name].append(rec)
            for name in names:
                owner = "sdk" if name == "sdk" else "xray"
                if owner in unavailable:
                    rows.append({"case": case, "mode": name,
                                 "skipped": "integration not available: " + unavailable[owner]})
                    continue
                recs = per_round[name]
                row = {"case": case, "mode": name, "calls_per_batch": recs[0]["calls_per_batch"],
                       "calls_per_segment": recs[0]["per_segment"]}
                if name == "xray" and info.get("integration"):
                    row["integration"] = info["integration"]
                for key in ("wall", "thread", "cpu"):
                    row[key + "_us"] = summary([x for rec in recs for x in rec[key]])
                bares = per_round["bare"]
                if name != "bare" and bares:
                    for key in ("wall", "thread", "cpu"):
                        diffs = []
                        for rec, brec in zip(recs, bares, strict=False):
                            if name == "xray":  # same process: interleaved batch pairs
                                diffs += [a - b for a, b in
                                          zip(rec[key], brec[key], strict=False)]
                            else:  # another process of the same round: its bare median
                                b = summary(brec[key])["median"]
                                diffs += [a - b for a in rec[key]]
                        row[key + "_overhead_us"] = summary(diffs)
                    row["baseline"] = ("same process" if name == "xray"
                                       else "bare batches of the same round's other process")
                    bmed = summary([x for rec in bares for x in rec["wall"]])["median"]
                    row["ratio"] = row["wall_us"]["median"] / bmed
                rows.append(row)
    return {"rounds": rounds, "batches_per_round": batches, "rows": rows, "versions": versions}


# -- instruction counts (callgrind) ------------------------------------------------------------
VARIANTS = ("bare", "traced", "encoded")


def botocore_calls(calls: int) -> int:
    """The botocore cases' calls for ``calls`` of the others: a botocore call costs ~50 times a
    sqlite3 one, so a fifth of them, and never fewer than BOTOCORE_MIN (with too few, what
    differs between two runs apart from the calls -- a garbage collection more or less, a
    second's text cached again -- is a large part of the difference)."""
    return max(calls // 5, BOTOCORE_MIN)


BOTOCORE_MIN = 100


def instructions(python=sys.executable, cases=CASES, calls=1000, log=print) -> list:
    """Instructions per call of each case and variant: a run with ``calls`` calls minus one
    with none, divided by ``calls`` (botocore: ``botocore_calls(calls)``). Each variant first
    runs once outside callgrind, so both counted runs find every module compiled (a ``.pyc``
    written during the first counted run would be counted in it alone)."""
    import json
    import re
    import shutil

    if not shutil.which("valgrind"):
        raise RuntimeError("valgrind is not installed")
    # the tracer configured from this environment first (as xray_setup does), then with the
    # counting emitter: local sampling, no daemon, nothing polled in the background
    env = worker_env({"PYTHONHASHSEED": "0", "XRAY_SAMPLING": "local",
                      "XRAY_SAMPLING_RULES": RULES_SAMPLED, "XRAY_SERVICE_NAME": "bench",
                      "AWS_XRAY_DAEMON_ADDRESS": f"127.0.0.1:{closed_udp_port()}"})

    def warm(spec):
        proc = subprocess.run([python, os.path.join(HERE, "calls_worker.py"), json.dumps(spec)],
                              capture_output=True, text=True, env=env, timeout=600)
        if proc.returncode != 0:
            raise RuntimeError(proc.stderr[-2000:])

    def counted(spec):
        proc = subprocess.run(
            ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", python,
             os.path.join(HERE, "calls_worker.py"), json.dumps(spec)],
            capture_output=True, text=True, env=env, timeout=1800)
        found = re.search(r"Collected : (\d+)", proc.stderr)
        if proc.returncode != 0 or not found:
            raise RuntimeError(proc.stderr[-2000:])
        return int(found.group(1))

    rows = []
    for case in cases:
        if case == "psycopg" and _reachable(PG):
            log("  instructions, psycopg: " + _reachable(PG))
            continue
        n = botocore_calls(calls) if case in BOTOCORE else calls
        row = {"case": case, "calls": n}
        for variant in VARIANTS:
            spec = {"mode": "count", "case": case, "variant": variant, "dsn": DSN,
                    "rules": RULES_SAMPLED}
            warm(dict(spec, calls=PER_SEGMENT))
            row[variant] = (counted(dict(spec, calls=n)) - counted(dict(spec, calls=0))) / n
        log(f"  instructions, {case}: bare {row['bare']:.0f}, traced "
            f"+{row['traced'] - row['bare']:.0f}, encoded +{row['encoded'] - row['bare']:.0f}")
        rows.append(row)
    return rows


def main(argv=None) -> int:
    import argparse

    p = argparse.ArgumentParser(description="per-call instruction counts (callgrind)")
    p.add_argument("--instructions", action="store_true", required=True)
    p.add_argument("--calls", type=int, default=1000)
    p.add_argument("--cases", default=",".join(CASES))
    p.add_argument("--python", default=sys.executable,
                   help="the interpreter counted (a virtualenv with another agent installed)")
    args = p.parse_args(argv)
    rows = instructions(python=args.python, cases=[c for c in args.cases.split(",") if c],
                        calls=args.calls)
    print("| call | bare | traced: calling thread | traced + encoding (sender) |")
    print("|---|---|---|---|")
    for r in rows:
        b = r["bare"]
        print(f"| {r['case']} | {b:,.0f} | +{r['traced'] - b:,.0f} | +{r['encoded'] - b:,.0f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
