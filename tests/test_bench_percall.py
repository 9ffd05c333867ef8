"""The per-call instruction benchmark's cases do what they claim (``bench/calls_worker.py`` in its
``count`` mode, run once outside callgrind with ``check``): botocore-wire's request is built,
signed and handed to the agent's ``before-send`` handler, and its canned response is parsed
into what the subsegment records. Counts are never asserted here."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from xray_testing import validate

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "bench"
sys.path.insert(0, str(BENCH))

import benchlib  # noqa: E402
import percall  # noqa: E402


def _check(case, variant, calls=20):
    spec = {"mode": "count", "case": case, "variant": variant, "calls": calls, "check": True,
            "rules": benchlib.RULES_SAMPLED, "dsn": percall.DSN}
    proc = subprocess.run([sys.executable, str(BENCH / "calls_worker.py"), json.dumps(spec)],
                          capture_output=True, text=True, timeout=120,
                          env=benchlib.worker_env({}))
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = benchlib.parse_result(proc.stdout)
    assert out is not None, proc.stdout[-2000:]
    docs = [json.loads(d) for d in out["documents"]]
    for doc in docs:
        validate(doc)
    return docs, out.get("request_headers")


def _subsegments(docs):
    return [s for d in docs for s in d.get("subsegments", ())]


@pytest.mark.parametrize("variant", ["traced", "encoded"])
def test_botocore_wire_runs_signing_the_header_handler_and_parsing(variant):
    docs, headers = _check("botocore-wire", variant)
    subs = _subsegments(docs)
    assert len(subs) == 10 and {s["name"] for s in subs} == {"dynamodb"}
    last = subs[-1]
    # the response was parsed: the request id and the status come from the canned HTTP answer
    assert last["aws"]["request_id"].startswith("Q3VH2D4T9N")
    assert last["aws"]["operation"] == "GetItem" and last["aws"]["table_name"] == "orders"
    assert last["aws"]["retries"] == 0  # counted by the before-send handler
    assert last["http"]["response"]["status"] == 200
    # the request was signed and carried the agent's trace header, naming the last call
    assert headers["Authorization"].startswith("AWS4-HMAC-SHA256 ")
    assert headers["X-Amzn-Trace-Id"] == (
        f"Root={docs[0]['trace_id']};Parent={last['id']};Sampled=1")


def test_botocore_wire_bare_sends_no_trace_header():
    docs, headers = _check("botocore-wire", "bare")
    assert _subsegments(docs) == []
    assert headers["Authorization"].startswith("AWS4-HMAC-SHA256 ")
    assert "X-Amzn-Trace-Id" not in headers and "traceparent" not in headers


def test_botocore_stubbed_case_still_records_its_calls():
    docs, headers = _check("botocore", "traced")
    assert headers is None  # answered on before-call: never built nor sent
    subs = _subsegments(docs)
    assert len(subs) == 10 and subs[-1]["aws"]["operation"] == "GetItem"


def test_botocore_cases_count_enough_calls():
    assert set(percall.BOTOCORE) <= set(percall.CASES)
    assert "botocore" in percall.CASES and "botocore-wire" in percall.CASES
    # --calls 500 (and fewer) still gives at least 100 botocore calls, and more calls more
    assert percall.botocore_calls(50) >= 100
    assert percall.botocore_calls(500) >= 100
    assert percall.botocore_calls(5000) == 1000
