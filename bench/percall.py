"""Per-call cost of the client integrations: sqlite3, psycopg (local PostgreSQL), http.client
(loopback server) and botocore (stubbed), bare versus this agent versus aws-xray-sdk's patchers.
One worker process per (case, mode); several rounds, modes in a rotating order per round; a
mode's overhead is its batches minus the bare median of the same round."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

from benchlib import HERE, RULES_SAMPLED, closed_udp_port, rotate, run_worker, summary, worker_env

CASES = ("sqlite3", "psycopg", "http.client", "botocore")
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
    """``venvs``: mode -> Venv (bare and xray use ours); ``launcher_env``: PYTHONPATH and
    XRAY_AUTOINST_EXPECT for ours, as xray-run sets them."""
    daemon = f"127.0.0.1:{closed_udp_port()}"
    base_env = worker_env({"BENCH_DAEMON": daemon})
    envs = {
        "bare": base_env,
        "xray": dict(base_env, AWS_XRAY_DAEMON_ADDRESS=daemon, XRAY_SAMPLING="local",
                     XRAY_SAMPLING_RULES=RULES_SAMPLED, XRAY_SERVICE_NAME="bench",
                     **launcher_env),
        "sdk": base_env,
    }
    pg_problem = _reachable(PG)
    rows = []
    versions = {}
    with HttpServer() as server:
        for case in CASES:
            if case == "psycopg" and pg_problem:
                rows.extend({"case": case, "mode": m, "skipped": pg_problem} for m in modes)
                log("  per call, psycopg: " + pg_problem)
                continue
            spec = {"case": case, "batches": batches, "target_s": target_s, "dsn": DSN,
                    "http_port": server.port}
            per_mode = {m: [] for m in modes}
            unavailable = {}
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
                    per_mode[mode].append(res)
            bare_rounds = per_mode.get("bare") or []
            for mode in modes:
                if mode in unavailable:
                    rows.append({"case": case, "mode": mode,
                                 "skipped": "integration not available: " + unavailable[mode]})
                    continue
                results = per_mode[mode]
                row = {"case": case, "mode": mode,
                       "calls_per_batch": results[0]["result"]["calls_per_batch"],
                       "calls_per_segment": results[0]["result"]["per_segment"]}
                if results[0].get("integration"):
                    row["integration"] = results[0]["integration"]
                for key in ("wall", "thread", "cpu"):
                    row[key + "_us"] = summary([x for res in results for x in res["result"][key]])
                if mode != "bare" and bare_rounds:
                    for key in ("wall", "thread", "cpu"):
                        diffs = []
                        for res, bres in zip(results, bare_rounds, strict=False):
                            b = summary(bres["result"][key])["median"]
                            diffs += [x - b for x in res["result"][key]]
                        row[key + "_overhead_us"] = summary(diffs)
                    bmed = summary([x for res in bare_rounds for x in res["result"]["wall"]])
                    row["ratio"] = row["wall_us"]["median"] / bmed["median"]
                rows.append(row)
    return {"rounds": rounds, "batches_per_round": batches, "rows": rows, "versions": versions}
