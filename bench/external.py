"""Benchmarks written alongside their components (the local daemon, the outbound HTTP and SQL
integrations): run each script as its authors wrote it, when it exists, and keep its JSON and
its printed table in the results."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from benchlib import HERE, ROOT

SCRIPTS = {
    "daemon": "bench_daemon.py",
    "outbound_http": "bench_outbound_http.py",
    "sql": "bench_sql.py",
    "http_async": "bench_http_async.py",
    "redis_mysql": "bench_redis_mysql.py",
    "async_db": "bench_async_db.py",
    "queues": "bench_queues.py",
    "lambda": "bench_lambda.py",
    "ui": "bench_ui.py",
    "logs": "bench_logs.py",
}


def run(name: str, quick: bool, log=print, timeout: float = 1800) -> dict:
    script = os.path.join(HERE, SCRIPTS[name])
    if not os.path.exists(script):
        return {"skipped": f"bench/{SCRIPTS[name]} does not exist (yet)"}
    with open(script, encoding="utf-8") as f:
        source = f.read()
    out_path = os.path.join(ROOT, ".bench", f"{name}.json")
    argv = [sys.executable, script]
    if quick and "--quick" in source:
        argv.append("--quick")
    if quick and "--no-moto" in source:
        argv.append("--no-moto")  # a smoke run: no moto server start
    if quick and "--no-otel" in source:
        argv.append("--no-otel")  # a smoke run: no OpenTelemetry environment built
    if "--out" in source:
        argv += ["--out", out_path]
        if os.path.exists(out_path):
            os.unlink(out_path)
    shown = " ".join(os.path.relpath(a, ROOT) if a.startswith(ROOT) else a for a in argv)
    log(f"  {name}: {shown}")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("XRAY_", "AWS_XRAY_"))}
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, cwd=ROOT,
                          env=env)
    result = {"command": shown,
              "returncode": proc.returncode, "stdout": proc.stdout[-6000:]}
    if proc.returncode != 0:
        result["error"] = proc.stderr[-3000:]
        return result
    if "--out" in source and os.path.exists(out_path):
        with open(out_path, encoding="utf-8") as f:
            result["data"] = json.load(f)
    return result
