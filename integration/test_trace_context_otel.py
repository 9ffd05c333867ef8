"""W3C trace context end to end against a service instrumented with OpenTelemetry's own SDK
and W3C propagator: trace ids line up both ways."""

import json
import subprocess
import sys
import time

import pytest
from xray_testing import (
    BIN,
    ROOT,
    agent_env,
    free_port,
    http_get,
    need,
    start_traced,
    stop,
    validate,
    wait_http,
)

need("opentelemetry.sdk")
need("opentelemetry.instrumentation.wsgi")
need("fastapi")

APPS = ROOT / "integration" / "apps"
UVICORN = [str(BIN / "uvicorn"), "--host", "127.0.0.1", "--port", "{port}"]


def start(cmd, daemon, **env):
    return start_traced(cmd, daemon, APPS, **env)


@pytest.fixture
def otel(tmp_path):
    spans = tmp_path / "spans.jsonl"
    port = free_port()
    env = {k: v for k, v in agent_env().items() if not k.startswith("XRAY_")}
    env["OTEL_SPANS_FILE"] = str(spans)
    p = subprocess.Popen([sys.executable, str(APPS / "otelsvc.py"), str(port)], env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    wait_http(port, "/warmup", proc=p)

    def read(count):
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            lines = spans.read_text().splitlines() if spans.exists() else []
            found = [json.loads(line) for line in lines if '"/warmup"' not in line]
            found = [s for s in found if s["name"] != "GET /warmup"]
            if len(found) >= count:
                return found
            time.sleep(0.1)
        raise AssertionError(f"OpenTelemetry spans: {spans.read_text()}")

    yield port, read
    stop(p)


def test_opentelemetry_caller_continues_into_this_agent(daemon, otel):
    otel_port, spans = otel
    p, port = start(UVICORN + ["fastapiapp:app"], daemon)
    try:
        status, _, body = http_get(otel_port, f"/call?http://127.0.0.1:{port}/items/5")
        assert status == 200 and body == b'{"item":5}'
        [doc] = daemon.wait(1)
        validate(doc)
        [server] = spans(1)
        trace_hex = server["trace_id"]
        assert doc["trace_id"] == f"1-{trace_hex[:8]}-{trace_hex[8:]}"
        assert doc["parent_id"] == server["span_id"]  # the span that made the call
    finally:
        stop(p)


def test_this_agent_continues_into_an_opentelemetry_service(daemon, otel):
    otel_port, spans = otel
    p, port = start(UVICORN + ["fastapiapp:app"], daemon,
                    APP_DOWNSTREAM=f"http://127.0.0.1:{otel_port}")
    try:
        assert http_get(port, "/fanout/3")[0] == 200
        [doc] = daemon.wait(1)
        validate(doc)
        calls = {s["id"]: s for s in doc["subsegments"]}
        received = spans(2)
        trace_hex = doc["trace_id"][2:].replace("-", "")
        for span in received:
            assert span["kind"] == "SERVER"
            assert span["trace_id"] == trace_hex
            assert span["parent_id"] in calls  # each call's subsegment is the span's parent
        assert len({s["parent_id"] for s in received}) == 2
    finally:
        stop(p)
