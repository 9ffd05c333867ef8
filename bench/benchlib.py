"""Shared by the benchmark runner and its workers: statistics, the worker protocol, ports and a
UDP sink. Standard library only: workers import this inside the peers' virtualenvs too."""

from __future__ import annotations

import json
import os
import socket
import statistics
import sys
import time

RESULT_PREFIX = "BENCH-RESULT "
HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

# the X-Ray sampling rules the benchmarks use for "sampled" and "unsampled"
RULES_SAMPLED = '{"version": 2, "default": {"fixed_target": 0, "rate": 1.0}}'
RULES_UNSAMPLED = '{"version": 2, "default": {"fixed_target": 0, "rate": 0.0}}'


# -- statistics -------------------------------------------------------------------------------
def quantile(values, q):
    """Linear-interpolated quantile of a non-empty sequence (q in [0, 1])."""
    xs = sorted(values)
    if not xs:
        raise ValueError("no values")
    pos = (len(xs) - 1) * q
    lo = int(pos)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


def summary(values):
    """median with the interquartile range: {"median", "p25", "p75", "n"}."""
    values = list(values)
    return {
        "median": statistics.median(values),
        "p25": quantile(values, 0.25),
        "p75": quantile(values, 0.75),
        "n": len(values),
    }


def paired(variant, baseline):
    """Differences of interleaved runs (variant[i] - baseline[i]), summarised."""
    n = min(len(variant), len(baseline))
    return summary([variant[i] - baseline[i] for i in range(n)])


def rotate(items, i):
    """``items`` rotated by ``i``: interleaved runs do not always start with the same one."""
    items = list(items)
    if not items:
        return items
    k = i % len(items)
    return items[k:] + items[:k]


# -- worker protocol --------------------------------------------------------------------------
def emit_result(obj) -> None:
    """A worker's answer: one line on stdout, whatever else libraries print."""
    sys.stdout.write(RESULT_PREFIX + json.dumps(obj) + "\n")
    sys.stdout.flush()


def parse_result(stdout: str):
    for line in reversed(stdout.splitlines()):
        if line.startswith(RESULT_PREFIX):
            return json.loads(line[len(RESULT_PREFIX):])
    return None


# -- ports ------------------------------------------------------------------------------------
def free_port(kind=socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def closed_udp_port() -> int:
    """A UDP port on loopback where nothing listens (datagrams sent there are discarded)."""
    return free_port(socket.SOCK_DGRAM)


# -- batches ----------------------------------------------------------------------------------
def calibrate(run, target_s: float, start: int = 16, limit: int = 2_000_000) -> int:
    """How many iterations make ``run(n)`` last about ``target_s`` seconds."""
    n = start
    while True:
        t0 = time.perf_counter()
        run(n)
        dt = time.perf_counter() - t0
        if dt >= target_s / 4 or n >= limit:
            break
        n *= 4
    return max(1, min(limit, int(n * target_s / max(dt, 1e-9))))


def run_worker(python: str, script: str, spec: dict, env=None, timeout: float = 900,
               prefix=()) -> dict:
    """Run ``script`` (a file in bench/) under ``python`` with ``spec``; return its result."""
    import subprocess

    argv = [*prefix, python, os.path.join(HERE, script), json.dumps(spec)]
    proc = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=timeout,
                          cwd=HERE)
    result = parse_result(proc.stdout)
    if proc.returncode != 0 or result is None:
        raise RuntimeError(f"{script} {spec} failed ({proc.returncode}):\n"
                           f"{proc.stdout[-1500:]}{proc.stderr[-3000:]}")
    return result


def worker_env(extra=None, pythonpath=None) -> dict:
    """A clean environment for a worker: no tracer configuration leaks in from ours."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("XRAY_", "AWS_XRAY_", "OTEL_", "DD_", "PYTHON"))}
    env.update({"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                "AWS_DEFAULT_REGION": "us-east-1", "AWS_EC2_METADATA_DISABLED": "true"})
    if extra:
        env.update(extra)
    return env
