"""End to end: requests per second of a trivial application under gunicorn (2 sync workers)
or uvicorn (one process), bare and under ``xray-run`` sampling every request and none, with a
UDP sink standing in for the daemon so every segment is really emitted. In full mode the same
run has the alternatives, each in its virtualenv with its own bare baseline: aws-xray-sdk
(``patch_all()`` and a middleware on ``xray_recorder``; WSGI only, it has no ASGI middleware),
``opentelemetry-instrument`` and ``ddtrace-run`` (each with its own middleware around the
app: neither traces a plain WSGI or ASGI app by itself), each sampling all and none.
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
import tempfile
import time
from dataclasses import dataclass

from benchlib import HERE, RULES_SAMPLED, RULES_UNSAMPLED, free_port, rotate, summary, worker_env
from sink import Sink, pin

APPS = os.path.join(HERE, "apps")
CONNECTIONS = 4


def _wait(port, proc, errors, timeout=60.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            errors.seek(0)
            raise RuntimeError(f"the server exited with {proc.returncode}: "
                               f"{errors.read()[-2000:]}")
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


@dataclass(frozen=True)
class Variant:
    """One server configuration of the end-to-end run."""

    name: str
    venv: str  # the virtualenv it runs in (bench/venvs.py)
    launcher: str | None = None  # a script of that virtualenv put before the server command
    wsgi: str = "e2e_app:app"
    asgi: str | None = "e2e_asgi_app:app"  # None: not run under uvicorn
    env: tuple = ()  # (name, value) pairs added to the server's environment
    baseline: str = "bare"  # the bare variant (same virtualenv) its ratios are taken to
    to_sink: bool = False  # its documents go to the UDP sink (counted per request)


def _bare(venv):
    name = "bare" if venv == "xray-autoinst" else f"bare ({venv} virtualenv)"
    return Variant(name, venv, baseline=name)


# OpenTelemetry as a user of X-Ray configures opentelemetry-instrument, exporter aside (see
# apps/e2e_otel_app.py); ddtrace with its agent at a closed port (run() fills in the URL)
_OTEL = (("OTEL_SERVICE_NAME", "bench"), ("OTEL_PROPAGATORS", "xray"),
         ("OTEL_PYTHON_ID_GENERATOR", "xray"), ("OTEL_TRACES_EXPORTER", "none"),
         ("OTEL_METRICS_EXPORTER", "none"), ("OTEL_LOGS_EXPORTER", "none"))
_DD = (("DD_SERVICE", "bench"), ("DD_INSTRUMENTATION_TELEMETRY_ENABLED", "false"),
       ("DD_REMOTE_CONFIGURATION_ENABLED", "false"), ("DD_TRACE_STARTUP_LOGS", "false"),
       # a sampling rule is rate limited to 100 traces/s by default: "all" means all
       ("DD_TRACE_RATE_LIMIT", "100000"))

OURS = [
    _bare("xray-autoinst"),
    Variant("xray-run", "xray-autoinst", "xray-run", to_sink=True,
            env=(("XRAY_SAMPLING_RULES", RULES_SAMPLED),)),
    Variant("xray-run, unsampled", "xray-autoinst", "xray-run", to_sink=True,
            env=(("XRAY_SAMPLING_RULES", RULES_UNSAMPLED),)),
]
# aws-xray-sdk has no ASGI middleware (nor any uvicorn integration): WSGI only
PEERS = [
    _bare("aws-xray-sdk"),
    Variant("aws-xray-sdk middleware + patch_all(), sampled", "aws-xray-sdk",
            wsgi="e2e_sdk_app:app", asgi=None, env=(("BENCH_SAMPLING_RULES", RULES_SAMPLED),),
            baseline=_bare("aws-xray-sdk").name, to_sink=True),
    Variant("aws-xray-sdk middleware + patch_all(), unsampled", "aws-xray-sdk",
            wsgi="e2e_sdk_app:app", asgi=None, env=(("BENCH_SAMPLING_RULES", RULES_UNSAMPLED),),
            baseline=_bare("aws-xray-sdk").name, to_sink=True),
    _bare("opentelemetry"),
    Variant("opentelemetry-instrument, always_on", "opentelemetry", "opentelemetry-instrument",
            wsgi="e2e_otel_app:app", asgi="e2e_otel_app:asgi_app",
            env=(*_OTEL, ("OTEL_TRACES_SAMPLER", "always_on")),
            baseline=_bare("opentelemetry").name),
    Variant("opentelemetry-instrument, always_off", "opentelemetry", "opentelemetry-instrument",
            wsgi="e2e_otel_app:app", asgi="e2e_otel_app:asgi_app",
            env=(*_OTEL, ("OTEL_TRACES_SAMPLER", "always_off")),
            baseline=_bare("opentelemetry").name),
    _bare("ddtrace"),
    Variant("ddtrace-run, sample rate 1", "ddtrace", "ddtrace-run", wsgi="e2e_ddtrace_app:app",
            asgi="e2e_ddtrace_app:asgi_app",
            env=(*_DD, ("DD_TRACE_SAMPLING_RULES", '[{"sample_rate": 1.0}]')),
            baseline=_bare("ddtrace").name),
    Variant("ddtrace-run, sample rate 0", "ddtrace", "ddtrace-run", wsgi="e2e_ddtrace_app:app",
            asgi="e2e_ddtrace_app:asgi_app",
            env=(*_DD, ("DD_TRACE_SAMPLING_RULES", '[{"sample_rate": 0.0}]')),
            baseline=_bare("ddtrace").name),
]
VARIANTS = tuple(v.name for v in OURS)  # the quick run's


def plan(venvs, server) -> list:
    """The variants to run: this agent's, and each peer whose virtualenv is there (a bare
    baseline only for a virtualenv with at least one variant on this server)."""
    out = []
    for v in OURS + PEERS:
        if v.venv not in venvs or (server == "uvicorn" and v.asgi is None):
            continue
        out.append(v)
    used = {v.baseline for v in out if v.baseline != v.name}
    return [v for v in out if v.baseline != v.name or v.name in used or v.name == "bare"]


_TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def tree_cpu(pid):
    """CPU seconds (user + system) used so far by ``pid`` and its children (the workers)."""
    split = tree_cpu_split(pid)
    return None if split is None else split[0] + split[1]


def tree_cpu_split(pid):
    """(user, system) CPU seconds used so far by ``pid`` and its children: the system part is
    the kernel's work for the server (its sockets, a document's ``send``), which an instruction
    count of the user space does not see."""
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
        user = system = 0
        for p in pids:
            with open(f"/proc/{p}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            user += int(fields[11])
            system += int(fields[12])
    except (OSError, ValueError, IndexError):
        return None
    return user / _TICK, system / _TICK


def server_command(venv, server, port, variant=OURS[0]):
    """gunicorn (2 sync workers, the WSGI app) or uvicorn (one process, the ASGI app), behind
    the variant's launcher."""
    if server == "uvicorn":
        cmd = [venv.script("uvicorn"), "--host", "127.0.0.1", "--port", str(port),
               "--app-dir", APPS, "--log-level", "warning", "--no-access-log", variant.asgi]
    else:
        cmd = [venv.script("gunicorn"), "--workers", "2", "--bind", f"127.0.0.1:{port}",
               "--chdir", APPS, "--log-level", "warning", variant.wsgi]
    if variant.launcher:
        cmd = [venv.script(variant.launcher), *cmd]
    return cmd


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
    with Sink(cpu=1) as sink, tempfile.TemporaryFile("w+") as errors:
        env = worker_env({"AWS_XRAY_DAEMON_ADDRESS": sink.address, "XRAY_SAMPLING": "local",
                          "XRAY_SERVICE_NAME": "bench",
                          "DD_TRACE_AGENT_URL": f"http://127.0.0.1:{closed_tcp_port()}",
                          **dict(variant.env)})
        cmd = server_command(venv, server, port, variant)
        # stderr to a file: a pipe nobody reads during the load could fill and stall the server
        proc = subprocess.Popen([*pin(0), *cmd], env=env, stdout=subprocess.DEVNULL,
                                stderr=errors, text=True)
        try:
            _wait(port, proc, errors)
            # the first worker answers while the second may still be importing the tracer:
            # that CPU must not count as the requests' (nor compete with them on the core)
            _settle(proc.pid)
            _warm(port, warmup)
            _settle(proc.pid)
            cpu0 = tree_cpu_split(proc.pid)
            res = load(port, seconds)
            cpu1 = tree_cpu_split(proc.pid)
            if cpu0 is not None and cpu1 is not None and res["requests"]:
                per = 1e6 / res["requests"]
                res["server_user_us_per_request"] = (cpu1[0] - cpu0[0]) * per
                res["server_system_us_per_request"] = (cpu1[1] - cpu0[1]) * per
                res["server_cpu_us_per_request"] = (res["server_user_us_per_request"]
                                                    + res["server_system_us_per_request"])
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        errors.seek(0)
        err = errors.read()
    res["sink"] = sink.counts
    res["served_including_warmup"] = res["requests"] + warmup + 1
    if err.strip():
        res["stderr"] = err.strip()[-1000:]
    return res


def _settle(pid, window=0.5, idle=0.05, timeout=30.0) -> None:
    """Wait until the server's processes, left alone, use at most ``idle`` of a core over
    ``window`` seconds (their start-up is over), for at most ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    before = tree_cpu(pid)
    while before is not None and time.monotonic() < deadline:
        time.sleep(window)
        after = tree_cpu(pid)
        if after is None or after - before <= idle * window:
            return
        before = after


def closed_tcp_port() -> int:
    """A TCP port on loopback where nothing listens (connections are refused at once)."""
    return free_port()


def run_asgi(venvs, rounds: int, seconds: float, log=print) -> dict:
    res = run(venvs, rounds, seconds, log, server="uvicorn")
    res["workers"] = 1
    res["flavour"] = uvicorn_flavour(_as_dict(venvs)["xray-autoinst"])
    return res


def _as_dict(venvs) -> dict:
    return venvs if isinstance(venvs, dict) else {"xray-autoinst": venvs}


def run(venvs, rounds: int, seconds: float, log=print, server="gunicorn") -> dict:
    """``venvs``: name -> virtualenv (bench/venvs.py); this agent's alone in quick mode."""
    venvs = _as_dict(venvs)
    variants = plan(venvs, server)
    runs = {v.name: [] for v in variants}
    for r in range(rounds):
        for v in rotate(variants, r):
            log(f"  end to end ({server}), round {r + 1}/{rounds}: {v.name}, {seconds:g} s")
            runs[v.name].append(one_run(venvs[v.venv], v, seconds, server=server))
    rows = []
    for v in variants:
        mine = runs[v.name]
        cpu = [x["server_cpu_us_per_request"] for x in mine if "server_cpu_us_per_request" in x]
        row = {"variant": v.name, "virtualenv": v.venv,
               "launcher": v.launcher,
               "app": v.asgi if server == "uvicorn" else v.wsgi,
               "rps": summary([x["rps"] for x in mine]),
               "server_cpu_us_per_request": summary(cpu) if cpu else None,
               "latency_p50_ms": summary([x["latency_p50_ms"] for x in mine
                                          if x.get("latency_p50_ms") is not None] or [0]),
               "latency_p99_ms": summary([x["latency_p99_ms"] for x in mine
                                          if x.get("latency_p99_ms") is not None] or [0]),
               "runs": mine}
        if v.baseline != v.name:
            base = runs[v.baseline]
            row["baseline"] = v.baseline
            row["ratio"] = summary([a["rps"] / b["rps"] for a, b in
                                    zip(mine, base, strict=False)])
            if v.to_sink:
                served = sum(x["served_including_warmup"] for x in mine)
                got = sum((x["sink"] or {}).get("datagrams", 0) for x in mine)
                row["documents_per_request"] = got / served if served else None
            # the rate a saturated server would keep, from its CPU per request: the load
            # generator may not saturate it, then the requests/s ratio is the client's
            pairs = [(a["server_cpu_us_per_request"], b["server_cpu_us_per_request"])
                     for a, b in zip(mine, base, strict=False)
                     if "server_cpu_us_per_request" in a and "server_cpu_us_per_request" in b]
            if pairs:
                row["cpu_capacity_ratio"] = summary([b / a for a, b in pairs if a > 0])
                # server CPU the tracer adds per request, round by round, and its kernel part
                row["cpu_added_us_per_request"] = summary([a - b for a, b in pairs])
                system = [(a["server_system_us_per_request"], b["server_system_us_per_request"])
                          for a, b in zip(mine, base, strict=False)
                          if "server_system_us_per_request" in a
                          and "server_system_us_per_request" in b]
                if system:
                    row["system_added_us_per_request"] = summary([a - b for a, b in system])
            # the server's busy fraction of one core during the load: < 1 means unsaturated
            row["server_busy"] = summary([x["rps"] * x["server_cpu_us_per_request"] / 1e6
                                          for x in mine if "server_cpu_us_per_request" in x]
                                         or [0])
            # time per request the tracer adds on the server's core, from the rates
            row["added_us_per_request"] = summary([
                (1e6 / a["rps"] - 1e6 / b["rps"]) for a, b in zip(mine, base, strict=False)])
        rows.append(row)
    return {"server": server, "rounds": rounds, "seconds": seconds, "workers": 2,
            "connections": CONNECTIONS,
            "pinned": bool(pin(0)), "load_generator": runs["bare"][0]["tool"], "rows": rows}
