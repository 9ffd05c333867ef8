"""Start-up cost: ``python -c pass`` and a typical application start (importing flask,
requests, botocore and sqlite3), bare and under each tracer's launcher. Wall time (spawn to
exit) and peak RSS (``ru_maxrss`` from ``os.wait4``), the variants interleaved run by run."""

from __future__ import annotations

import json
import os
import subprocess
import time

from benchlib import closed_udp_port, paired, rotate, summary

SCENARIOS = {
    "python -c pass": "pass",
    "typical app start": "import sqlite3, flask, requests, botocore.session",
}
SDK_PATCH = "from aws_xray_sdk.core import patch_all; patch_all()\n"


def base_env(venv, daemon_port):
    env = {
        "PATH": f"{venv.bin}{os.pathsep}/usr/local/bin:/usr/bin:/bin",
        "HOME": os.environ.get("HOME", "/tmp"),
        "LANG": "C.UTF-8",
        "AWS_XRAY_DAEMON_ADDRESS": f"127.0.0.1:{daemon_port}",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_EC2_METADATA_DISABLED": "true",
    }
    return env


def launcher_environ(venv) -> dict:
    """PYTHONPATH and XRAY_AUTOINST_EXPECT exactly as ``xray-run`` sets them for ``venv``."""
    code = ("import json; from xray_autoinst.launcher import prepare_environ; "
            "print(json.dumps(prepare_environ({})))")
    out = subprocess.run([venv.python, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


class Variant:
    def __init__(self, name, argv_for, env, baseline=None, tracer=None):
        self.name = name
        self.argv_for = argv_for  # code -> argv
        self.env = env
        self.baseline = baseline
        self.tracer = tracer


def variants(venvs: dict, daemon_port: int) -> list[Variant]:
    """``venvs`` maps a tracer name to its Venv; missing ones are left out."""
    out = []
    ours = venvs["xray-autoinst"]
    env = base_env(ours, daemon_port)
    py = ours.python
    out.append(Variant("bare", lambda c, py=py: [py, "-c", c], env, tracer="xray-autoinst"))
    out.append(Variant("xray-run", lambda c, py=py: [ours.script("xray-run"), py, "-c", c],
                       env, "bare", "xray-autoinst"))
    out.append(Variant("bootstrap alone (PYTHONPATH)", lambda c, py=py: [py, "-c", c],
                       dict(env, **launcher_environ(ours)), "bare", "xray-autoinst"))
    if "aws-xray-sdk" in venvs:
        v = venvs["aws-xray-sdk"]
        env = base_env(v, daemon_port)
        out.append(Variant("bare (aws-xray-sdk venv)", lambda c, py=v.python: [py, "-c", c],
                           env, tracer="aws-xray-sdk"))
        out.append(Variant("aws-xray-sdk patch_all()",
                           lambda c, py=v.python: [py, "-c", SDK_PATCH + c], env,
                           "bare (aws-xray-sdk venv)", "aws-xray-sdk"))
    if "opentelemetry" in venvs:
        v = venvs["opentelemetry"]
        env = base_env(v, daemon_port)
        otel = dict(env, OTEL_TRACES_EXPORTER="none", OTEL_METRICS_EXPORTER="none",
                    OTEL_LOGS_EXPORTER="none", OTEL_SERVICE_NAME="bench",
                    OTEL_PYTHON_ID_GENERATOR="xray", OTEL_PROPAGATORS="xray")
        out.append(Variant("bare (opentelemetry venv)", lambda c, py=v.python: [py, "-c", c],
                           env, tracer="opentelemetry"))
        out.append(Variant("opentelemetry-instrument",
                           lambda c, v=v: [v.script("opentelemetry-instrument"), v.python,
                                           "-c", c],
                           otel, "bare (opentelemetry venv)", "opentelemetry"))
    if "ddtrace" in venvs:
        v = venvs["ddtrace"]
        env = base_env(v, daemon_port)
        dd = dict(env, DD_TRACE_AGENT_URL=f"http://127.0.0.1:{daemon_port}",
                  DD_INSTRUMENTATION_TELEMETRY_ENABLED="false",
                  DD_REMOTE_CONFIGURATION_ENABLED="false", DD_SERVICE="bench")
        out.append(Variant("bare (ddtrace venv)", lambda c, py=v.python: [py, "-c", c],
                           env, tracer="ddtrace"))
        out.append(Variant("ddtrace-run",
                           lambda c, v=v: [v.script("ddtrace-run"), v.python, "-c", c],
                           dd, "bare (ddtrace venv)", "ddtrace"))
    return out


def spawn_wait(argv, env):
    """Wall seconds, peak RSS (KiB) and CPU seconds (user + system, every thread) of one run;
    output discarded."""
    actions = [
        (os.POSIX_SPAWN_OPEN, 1, os.devnull, os.O_WRONLY, 0),
        (os.POSIX_SPAWN_OPEN, 2, os.devnull, os.O_WRONLY, 0),
    ]
    t0 = time.perf_counter()
    pid = os.posix_spawn(argv[0], argv, env, file_actions=actions)
    _, status, usage = os.wait4(pid, 0)
    t1 = time.perf_counter()
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"{argv} exited with {os.waitstatus_to_exitcode(status)}")
    return t1 - t0, usage.ru_maxrss, usage.ru_utime + usage.ru_stime


def check(variant, code):
    """One run with output captured: it must succeed (also warms the bytecode caches)."""
    argv = variant.argv_for(code)
    proc = subprocess.run(argv, env=variant.env, capture_output=True, text=True, timeout=120)
    if proc.returncode != 0:
        raise RuntimeError(f"{variant.name}: {argv} failed ({proc.returncode}): "
                           f"{proc.stderr[-1500:]}")
    return proc.stderr.strip()[-500:]


def instructions(argv, env):
    """Instructions executed (valgrind's callgrind, following exec), or None without valgrind.
    Deterministic where wall time on a shared machine is not."""
    import re
    import shutil

    if shutil.which("valgrind") is None:
        return None
    proc = subprocess.run(["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null",
                           "--trace-children=yes", *argv], env=env, capture_output=True,
                          text=True, timeout=600)
    counts = [int(m.replace(",", "")) for m in re.findall(r"I\s+refs:\s+([\d,]+)", proc.stderr)]
    if proc.returncode != 0 or not counts:
        return None
    return sum(counts)


def run(venvs: dict, runs: dict, log=print, warmups: int = 2, count_instructions=False) -> dict:
    """``runs``: scenario -> number of interleaved runs of every variant, after ``warmups``
    checked runs of each."""
    daemon_port = closed_udp_port()
    vs = variants(venvs, daemon_port)
    results = {}
    for scenario, code in SCENARIOS.items():
        n = runs[scenario]
        notes = {}
        for v in vs:
            for _ in range(warmups):
                stderr = check(v, code)
            if stderr:
                notes[v.name] = "stderr: " + stderr
        wall = {v.name: [] for v in vs}
        rss = {v.name: [] for v in vs}
        cpu = {v.name: [] for v in vs}
        log(f"  start-up, {scenario}: {len(vs)} variants x {n} interleaved runs")
        for i in range(n):
            for v in rotate(vs, i):
                w, r, c = spawn_wait(v.argv_for(code), v.env)
                wall[v.name].append(w * 1000)
                rss[v.name].append(r / 1024)
                cpu[v.name].append(c * 1000)
        rows = []
        for v in vs:
            row = {"variant": v.name, "tracer": v.tracer, "baseline": v.baseline,
                   "wall_ms": summary(wall[v.name]), "rss_mib": summary(rss[v.name]),
                   "cpu_ms": summary(cpu[v.name]),
                   "argv": v.argv_for(code)}
            if v.baseline:
                row["overhead_ms"] = paired(wall[v.name], wall[v.baseline])
                row["overhead_mib"] = paired(rss[v.name], rss[v.baseline])
                row["cpu_overhead_ms"] = paired(cpu[v.name], cpu[v.baseline])
                row["ratio"] = row["wall_ms"]["median"] / summary(wall[v.baseline])["median"]
            if v.name in notes:
                row["note"] = notes[v.name]
            rows.append(row)
        if count_instructions:
            log(f"  start-up, {scenario}: instructions executed (valgrind), this agent's variants")
            counted = {v.name: instructions(v.argv_for(code), v.env) for v in vs
                       if v.tracer == "xray-autoinst"}
            for row in rows:
                n_ins = counted.get(row["variant"])
                if n_ins is None:
                    continue
                row["instructions"] = n_ins
                base = counted.get(row["baseline"]) if row["baseline"] else None
                if base:
                    row["instructions_overhead_pct"] = (n_ins - base) / base * 100
        results[scenario] = {"code": code, "runs": n, "rows": rows}
    return results
