"""End to end: requests per second of a trivial application under gunicorn (2 sync workers),
bare and under ``xray-run`` sampling every request, with a UDP sink standing in for the daemon
so every segment is really emitted (and, for comparison, under ``xray-run`` sampling none).
The server is pinned to CPU 0; the load generator (``wrk``, else ``loadgen.py``) and the sink
to CPU 1. Variants alternate round by round. Besides the rate, the CPU time the server's
processes used (from /proc) per request served."""

from __future__ import annotations

import http.client
import os
import re
import shutil
import signal
import subprocess
import sys
import time

from benchlib import HERE, RULES_SAMPLED, RULES_UNSAMPLED, free_port, rotate, summary, worker_env
from sink import Sink, pin

APPS = os.path.join(HERE, "apps")
CONNECTIONS = 4


def _wait(port, proc, timeout=30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the server exited with {proc.returncode}: "
                               f"{proc.stderr.read()[-2000:]}")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", "/")
            body = conn.getresponse().read()
            conn.close()
            if body == b"ok":
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"the server on port {port} did not answer")


def _warm(port, n):
    for _ in range(n):
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        conn.request("GET", "/")
        conn.getresponse().read()
        conn.close()


_WRK_RPS = re.compile(r"Requests/sec:\s+([\d.]+)")
_WRK_TOTAL = re.compile(r"(\d+) requests in")
_WRK_LAT = re.compile(r"^\s+(50|99)%\s+([\d.]+)(us|ms|s)\s*$", re.M)
_UNIT = {"us": 0.001, "ms": 1.0, "s": 1000.0}


def load(port, seconds) -> dict:
    url = f"http://127.0.0.1:{port}/"
    if shutil.which("wrk"):
        cmd = [*pin(1), "wrk", "-t1", f"-c{CONNECTIONS}", f"-d{seconds:g}s", "--latency", url]
        out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
        lat = {p: float(v) * _UNIT[u] for p, v, u in _WRK_LAT.findall(out)}
        non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
        return {"tool": "wrk", "rps": float(_WRK_RPS.search(out).group(1)),
                "requests": int(_WRK_TOTAL.search(out).group(1)),
                "latency_p50_ms": lat.get("50"), "latency_p99_ms": lat.get("99"),
                "errors": int(non2xx.group(1)) if non2xx else 0}
    import json

    cmd = [*pin(1), sys.executable, os.path.join(HERE, "loadgen.py"), url, str(seconds),
           str(CONNECTIONS)]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    res = json.loads(out.strip().splitlines()[-1])
    res["tool"] = "loadgen.py"
    return res


VARIANTS = ("bare", "xray-run", "xray-run, unsampled")


_TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def tree_cpu(pid):
    """CPU seconds (user + system) used so far by ``pid`` and its children (the workers)."""
    pids = [pid]
    try:
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                try:
                    with open(f"/proc/{entry}/stat") as f:
                        fields = f.read().rsplit(")", 1)[1].split()
                except OSError:
                    continue
                if int(fields[1]) == pid:
                    pids.append(int(entry))
        total = 0
        for p in pids:
            with open(f"/proc/{p}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
    except (OSError, ValueError, IndexError):
        return None
    return total / _TICK


def server_command(venv, server, port):
    """gunicorn (2 sync workers, the WSGI app) or uvicorn (one process, the ASGI app)."""
    if server == "uvicorn":
        return [venv.script("uvicorn"), "--host", "127.0.0.1", "--port", str(port),
                "--app-dir", APPS, "--log-level", "warning", "--no-access-log",
                "e2e_asgi_app:app"]
    return [venv.script("gunicorn"), "--workers", "2", "--bind", f"127.0.0.1:{port}",
            "--chdir", APPS, "--log-level", "warning", "e2e_app:app"]


def uvicorn_flavour(venv) -> str:
    """What uvicorn picks by itself ("auto"): httptools and uvloop when they are installed."""
    found = []
    for mod, alt in (("httptools", "h11"), ("uvloop", "asyncio")):
        proc = subprocess.run([venv.python, "-I", "-c", f"import {mod}"], capture_output=True,
                              cwd="/")
        found.append(mod if proc.returncode == 0 else alt)
    return " + ".join(found)


def one_run(venv, variant, seconds, warmup=200, server="gunicorn") -> dict:
    port = free_port()
    rules = RULES_UNSAMPLED if variant.endswith("unsampled") else RULES_SAMPLED
    with Sink(cpu=1) as sink:
        env = worker_env({"AWS_XRAY_DAEMON_ADDRESS": sink.address, "XRAY_SAMPLING": "local",
                          "XRAY_SAMPLING_RULES": rules, "XRAY_SERVICE_NAME": "bench"})
        cmd = server_command(venv, server, port)
        if variant.startswith("xray-run"):
            cmd = [venv.script("xray-run"), *cmd]
        proc = subprocess.Popen([*pin(0), *cmd], env=env, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, text=True)
        try:
            _wait(port, proc)
            _warm(port, warmup)
            cpu0 = tree_cpu(proc.pid)
            res = load(port, seconds)
            cpu1 = tree_cpu(proc.pid)
            if cpu0 is not None and cpu1 is not None and res["requests"]:
                res["server_cpu_us_per_request"] = (cpu1 - cpu0) / res["requests"] * 1e6
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                _, err = proc.communicate(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                _, err = proc.communicate()
    res["sink"] = sink.counts
    res["served_including_warmup"] = res["requests"] + warmup + 1
    if err.strip():
        res["stderr"] = err.strip()[-1000:]
    return res


def run_asgi(venv, rounds: int, seconds: float, log=print) -> dict:
    res = run(venv, rounds, seconds, log, server="uvicorn")
    res["workers"] = 1
    res["flavour"] = uvicorn_flavour(venv)
    return res


def run(venv, rounds: int, seconds: float, log=print, server="gunicorn") -> dict:
    variants = list(VARIANTS)
    runs = {v: [] for v in variants}
    for r in range(rounds):
        for v in rotate(variants, r):
            log(f"  end to end ({server}), round {r + 1}/{rounds}: {v}, {seconds:g} s")
            runs[v].append(one_run(venv, v, seconds, server=server))
    rows = []
    for v in variants:
        cpu = [x["server_cpu_us_per_request"] for x in runs[v] if "server_cpu_us_per_request" in x]
        row = {"variant": v, "rps": summary([x["rps"] for x in runs[v]]),
               "server_cpu_us_per_request": summary(cpu) if cpu else None,
               "latency_p50_ms": summary([x["latency_p50_ms"] for x in runs[v]
                                          if x.get("latency_p50_ms") is not None] or [0]),
               "latency_p99_ms": summary([x["latency_p99_ms"] for x in runs[v]
                                          if x.get("latency_p99_ms") is not None] or [0]),
               "runs": runs[v]}
        if v != "bare":
            row["ratio"] = summary([a["rps"] / b["rps"] for a, b in
                                    zip(runs[v], runs["bare"], strict=False)])
            served = sum(x["served_including_warmup"] for x in runs[v])
            got = sum((x["sink"] or {}).get("datagrams", 0) for x in runs[v])
            row["documents_per_request"] = got / served if served else None
            # the rate a saturated server would keep, from its CPU per request: the load
            # generator may not saturate it, then the requests/s ratio is the client's
            pairs = [(a["server_cpu_us_per_request"], b["server_cpu_us_per_request"])
                     for a, b in zip(runs[v], runs["bare"], strict=False)
                     if "server_cpu_us_per_request" in a and "server_cpu_us_per_request" in b]
            if pairs:
                row["cpu_capacity_ratio"] = summary([b / a for a, b in pairs if a > 0])
            # the server's busy fraction of one core during the load: < 1 means unsaturated
            row["server_busy"] = summary([x["rps"] * x["server_cpu_us_per_request"] / 1e6
                                          for x in runs[v] if "server_cpu_us_per_request" in x]
                                         or [0])
            # CPU time per request the agent adds on the server's core, from the rates
            row["added_us_per_request"] = summary([
                (1e6 / a["rps"] - 1e6 / b["rps"]) for a, b in
                zip(runs[v], runs["bare"], strict=False)])
        rows.append(row)
    return {"server": server, "rounds": rounds, "seconds": seconds, "workers": 2,
            "connections": CONNECTIONS,
            "pinned": bool(pin(0)), "load_generator": runs["bare"][0]["tool"], "rows": rows}
