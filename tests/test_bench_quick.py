"""Smoke test of the benchmark suite: ``bench/run.py --quick`` runs this agent's own benchmarks
briefly and every one of them produces numbers. Timings are never asserted here."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CI = os.environ.get("CI", "").lower() == "true"


def _number(x) -> bool:
    return isinstance(x, (int, float)) and x == x  # not NaN


def _positive_summary(s) -> bool:
    return isinstance(s, dict) and _number(s.get("median")) and s["median"] > 0 and s["n"] > 0


@pytest.mark.timeout(400)
def test_quick_benchmarks_produce_numbers(tmp_path):
    out = tmp_path / "results.json"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "run.py"), "--quick", "--out", str(out)],
        capture_output=True, text=True, timeout=380, cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    results = json.loads(out.read_text())
    sec = results["sections"]
    assert results["meta"]["quick"] is True
    # quick mode builds no virtualenv: only the running interpreter is measured
    assert list(results["versions"]) == ["xray-autoinst"]
    assert results["versions"]["xray-autoinst"].get("xray-autoinst")

    for scenario in ("python -c pass", "typical app start"):
        rows = {r["variant"]: r for r in sec["startup"][scenario]["rows"]}
        assert set(rows) == {"bare", "xray-run", "bootstrap alone (PYTHONPATH)"}
        for row in rows.values():
            assert _positive_summary(row["wall_ms"]) and _positive_summary(row["rss_mib"]), row
        assert _number(rows["xray-run"]["overhead_ms"]["median"])

    rows = {r["variant"]: r for r in sec["per_request"]["rows"]}
    assert set(rows) == {"bare", "xray-sampled", "xray-unsampled", "flask-bare",
                         "flask-xray-sampled", "flask-xray-unsampled"}
    for name, row in rows.items():
        for key in ("wall_us", "thread_us", "cpu_us"):
            assert _positive_summary(row[key]), (name, key, row)
        if "bare" not in name:
            assert _number(row["wall_overhead_us"]["median"])
            assert _number(row["cpu_overhead_us"]["median"])

    # ASGI: the same, this agent's middleware only (the peers' need their virtualenvs)
    rows = {r["variant"]: r for r in sec["per_request_asgi"]["rows"]}
    assert set(rows) == {"bare", "xray-sampled", "xray-unsampled", "task-bare",
                         "task-xray-sampled", "task-xray-unsampled"}
    for name, row in rows.items():
        for key in ("wall_us", "thread_us", "cpu_us"):
            assert _positive_summary(row[key]), (name, key, row)
        if "bare" not in name:
            assert _number(row["wall_overhead_us"]["median"])

    seen = set()
    for row in sec["per_call"]["rows"]:
        seen.add((row["case"], row["mode"]))
        if "skipped" in row:
            # only a missing local service may stop a row, and never under CI
            assert "not reachable" in row["skipped"], row
            assert not CI, row["skipped"]
            warnings.warn(f"bench per call {row['case']}: {row['skipped']}", stacklevel=1)
            continue
        assert _positive_summary(row["wall_us"]), row
        if row["mode"] != "bare":
            assert _number(row["wall_overhead_us"]["median"]), row
    assert seen == {(c, m) for c in ("sqlite3", "psycopg", "http.client", "botocore",
                                     "botocore-wire")
                    for m in ("bare", "xray")}

    for name, r in sec["emission"]["results"].items():
        for key in ("encode+send", "encode only", "send only"):
            assert _positive_summary(r[key]), (name, key)
    assert sec["emission"]["sink"]["datagrams"] > 0
    assert sec["emission"]["sink"]["malformed"] == 0

    for name in ("daemon", "outbound_http", "sql"):
        data = sec[name]
        script = ROOT / "bench" / f"bench_{name}.py"
        if not script.exists():
            assert "skipped" in data
            continue
        assert data.get("returncode") == 0, data
        assert data.get("stdout") or data.get("data"), data
    if "data" in sec["daemon"]:
        assert sec["daemon"]["data"]["results"], sec["daemon"]

    rows = {r["variant"]: r for r in sec["e2e"]["rows"]}
    assert set(rows) == {"bare", "xray-run", "xray-run, unsampled"}
    for row in rows.values():
        assert _positive_summary(row["rps"]), row
    # sampled at 100%: every request served reached the sink as a document
    assert rows["xray-run"]["documents_per_request"] > 0.9, rows["xray-run"]
    assert rows["xray-run, unsampled"]["documents_per_request"] == 0, rows["xray-run, unsampled"]

    data = sec["e2e_asgi"]
    assert data["server"] == "uvicorn"
    rows = {r["variant"]: r for r in data["rows"]}
    assert set(rows) == {"bare", "xray-run", "xray-run, unsampled"}
    for row in rows.values():
        assert _positive_summary(row["rps"]), row
    assert rows["xray-run"]["documents_per_request"] > 0.9, rows["xray-run"]
    assert rows["xray-run, unsampled"]["documents_per_request"] == 0, rows["xray-run, unsampled"]

    assert results["targets"]
    assert "Targets" in proc.stdout
